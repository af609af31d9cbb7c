from django import forms

from .models import Profile


class AccountSettingsForm(forms.ModelForm):
    class Meta:
        model = Profile
        fields = ["allow_training_use"]
        labels = {"allow_training_use": "Let my conversations be used to improve the model"}
        help_texts = {
            "allow_training_use": "Staff may export conversations of people who agreed as training data. Off unless you turn it on."
        }
