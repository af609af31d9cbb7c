"""The fixed messages every simulated user sends, in order (same on every side)."""
MESSAGES = [
    "Hi Sheldon, how are you today?",
    "Do you want to come to the movies with us tonight?",
    "What is your favourite number?",
    "Can you explain string theory to me?",
    "Why do you always sit in that spot?",
    "Penny says you are annoying.",
    "Would you like some tea?",
    "What do you think of Leonard's new girlfriend?",
]


def messages_for(user_index, count):
    """User i starts at message i, so concurrent users send different texts."""
    return [MESSAGES[(user_index + k) % len(MESSAGES)] for k in range(count)]
