"""Settings for the Sheldon chat site.

Every setting that differs between machines comes from an environment
variable with a safe default; the README's settings table lists them all.
"""
import os
import secrets
from pathlib import Path

import dj_database_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime state (SQLite file, retrieval index, logs) lives here, never in git.
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name, default):
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def install_secret_key(path):
    """This installation's own random key, made once and kept in VAR_DIR (readable by its owner only)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        try:
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
                file.write(key)
        except FileExistsError:  # another process of this installation wrote it first
            return path.read_text().strip()
        return key


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and os.environ.get("SHELDON_REQUIRE_SECRET_KEY") == "1":
        raise RuntimeError("SECRET_KEY must be set in production.")
    # Never a key known from the source: one per installation (processes sharing VAR_DIR share it).
    SECRET_KEY = install_secret_key(VAR_DIR / "secret-key")
# The machine itself always reaches the site by its loopback names: the containers' health check and `make run`'s
# readiness poll ask 127.0.0.1 whatever public name ALLOWED_HOSTS gives.
ALLOWED_HOSTS = [*env_list("ALLOWED_HOSTS", "testserver"), "localhost", "127.0.0.1", "[::1]"]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# One switch for a deployment behind HTTPS: redirect to HTTPS, HSTS, cookies
# only over HTTPS, and the proxy's X-Forwarded-Proto trusted for the scheme.
# `manage.py check --deploy` is clean with it (tests/faults/test_deploy_settings.py).
SECURE_DEPLOYMENT = env_bool("SECURE_DEPLOYMENT", False)
if SECURE_DEPLOYMENT:
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container health check speaks plain HTTP
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "daphne",
    "accounts.apps.ThrottledAdminConfig",  # django.contrib.admin, its site with the login limits
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "data",
    "inference",
    "accounts",
    "chat",
    "review",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "sheldonsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "data.context_processors.corpus_notice",
            ],
        },
    },
]
WSGI_APPLICATION = "sheldonsite.wsgi.application"
ASGI_APPLICATION = "sheldonsite.asgi.application"

# Database: PostgreSQL from DATABASE_URL, else an embedded SQLite file (named as a path: in a URL, a "#" or "%20"
# of the folder's name would be read as URL syntax).
DATABASES = {
    "default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")))
    if os.environ.get("DATABASE_URL")
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": VAR_DIR / "db.sqlite3"}
}
# PostgreSQL: a pool of connections per process (Django 5.2), so socket handlers spread over
# threads reuse connections instead of opening one per call. 0: no pool (the test default).
DB_POOL_MAX_SIZE = int(os.environ.get("DB_POOL_MAX_SIZE", "0"))
if DB_POOL_MAX_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_MAX_SIZE,
        "max_idle": 60,  # an idle connection is closed after a minute
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# Attempts per seconds: log-ins per client address and per username, sign-ups per address.
LOGIN_RATE_LIMIT = os.environ.get("LOGIN_RATE_LIMIT", "20/300")
LOGIN_USER_RATE_LIMIT = os.environ.get("LOGIN_USER_RATE_LIMIT", "10/300")
SIGNUP_RATE_LIMIT = os.environ.get("SIGNUP_RATE_LIMIT", "5/3600")  # accounts made
# Every sign-up form sent, looser: a form sent back tells whether a username is taken.
SIGNUP_ATTEMPT_RATE_LIMIT = os.environ.get("SIGNUP_ATTEMPT_RATE_LIMIT", "30/3600")
# Mail (password reset is offered only with it).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

# Redis: present means the Redis channel layer, a Redis broker and separate
# worker processes; absent means everything runs inside the web process.
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis's layer, with a fix for a frame lost when a socket closes (see the module).
            "BACKEND": "sheldonsite.channel_layer.ShieldedPopChannelLayer",
            # redis-py's default 5 s socket timeout equals channels-redis's 5 s
            # blocking pop, which then crashes every socket idle for 5 s.
            # A Redis restart leaves the pool's connections dead: the next command on one
            # reconnects and tries again (before, the first socket after a restart got a 500).
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
                        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
                    }
                ],
                "capacity": 1000,
                "expiry": 60,
            },
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery (see sheldonsite/celery.py): namespace CELERY_.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "300"))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 15
# Far above the task time limit: an unacknowledged task is redelivered
# only after its worker is surely gone.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 6}
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- The product ---------------------------------------------------------
SHELDON_CHARACTER = os.environ.get("SHELDON_CHARACTER", "Sheldon")
TRANSCRIPTS = os.environ.get("TRANSCRIPTS", "")

# Inference (see inference/profiles.py and the README's settings table).
SHELDON_PROFILE = os.environ.get("SHELDON_PROFILE", "offline")
RETRIEVER_MODEL = os.environ.get("RETRIEVER_MODEL", "")
GENERATOR_MODEL = os.environ.get("GENERATOR_MODEL", "")
GENERATOR_ADAPTER = os.environ.get("GENERATOR_ADAPTER", "")
# Unset: the threshold measured for the retriever in use (inference.profiles.retrieval_threshold).
RETRIEVAL_THRESHOLD = float(os.environ["RETRIEVAL_THRESHOLD"]) if os.environ.get("RETRIEVAL_THRESHOLD") else None
RETRIEVAL_INDEX_PATH = Path(os.environ.get("RETRIEVAL_INDEX_PATH", VAR_DIR / "index"))
# Whether the best retrieved exchange over the threshold also goes into the chat prompt, as an earlier turn
# (the retrieved lines compete as candidates either way).
RETRIEVAL_IN_PROMPT = os.environ.get("RETRIEVAL_IN_PROMPT", "1") == "1"
# Sample-and-rank: replies sampled per request when the worker is idle (fewer under load), and how
# many retrieved scripted lines that passed the threshold compete with them (inference.selection).
REPLY_CANDIDATES = max(1, int(os.environ.get("REPLY_CANDIDATES", "4")))
SCRIPTED_CANDIDATES = max(0, int(os.environ.get("SCRIPTED_CANDIDATES", "5")))
# A reply ends after this many sentences, like his lines (half of them have one; one was rated above two,
# docs/evaluation.md rounds 9 and 10); 0: at MAX_NEW_TOKENS.
REPLY_MAX_SENTENCES = max(0, int(os.environ.get("REPLY_MAX_SENTENCES", "1")))
MAX_NEW_TOKENS = int(os.environ.get("MAX_NEW_TOKENS", "60"))
# Chat prompts: the oldest history turns are left out beyond this many tokens (bounds a batch's memory).
MAX_PROMPT_TOKENS = int(os.environ.get("MAX_PROMPT_TOKENS", "768"))
HISTORY_TURNS = int(os.environ.get("HISTORY_TURNS", "6"))
GENERATION_QUEUE = os.environ.get("GENERATION_QUEUE", "cpu")
# A conversation's next turn goes to the worker that answered its last one, which holds that turn's
# key-value cache (chat/affinity.py); off (on the web or on the worker): every reply goes to GENERATION_QUEUE.
WORKER_AFFINITY = env_bool("WORKER_AFFINITY", True)
# Dynamic batching in each worker (inference/batching.py).
BATCH_WINDOW_MS = int(os.environ.get("BATCH_WINDOW_MS", "30"))
BATCH_MAX_SIZE = int(os.environ.get("BATCH_MAX_SIZE", "16"))
# How often a busy worker's engine logs its throughput and how full its batch runs (0: never).
ENGINE_STATS_SECONDS = float(os.environ.get("ENGINE_STATS_SECONDS", "10"))
# What runs the generator (inference.loading.Engine): "auto" (default) serves chat models on CPU with
# OpenVINO GenAI and int8 weights (exported once), seq2seq models and CUDA with torch; "openvino" or
# "torch" to choose. docs/bench has the side-by-side figures.
INFERENCE_ENGINE = os.environ.get("INFERENCE_ENGINE", "auto")
# Threads per process for the engine (0, the default: the engine's own, one per physical core). On the
# 2-core benchmark machine two OpenVINO threads beat one beside the web tier (16 users: 114 against 93-100
# replies/min; README). With several workers on one machine, give each cores / workers.
INFERENCE_THREADS = int(os.environ.get("INFERENCE_THREADS", "0"))
# OpenVINO: the precision the generator computes in, whatever its weights are stored in: "f32" (the default),
# "bf16" or "f16" where the CPU has them, or "auto" for OpenVINO's own choice, which is bf16 on a CPU with AMX.
# The replies were rated blind in f32; docs/inference.md has what bf16 changes and saves.
INFERENCE_PRECISION = os.environ.get("INFERENCE_PRECISION", "f32")
# Threads a retriever embeds with on OpenVINO: one suits a worker, where a reply embeds a few short texts beside
# the generator; more builds a large index faster on a bigger machine (0: OpenVINO's default, every core).
RETRIEVER_THREADS = int(os.environ.get("RETRIEVER_THREADS", "1"))
# OpenVINO: gigabytes of paged key-value cache per worker, shared by the running rows and the prefix
# cache (SmolLM2-135M: about 23 KiB a token, so 1 GB holds some 45,000 tokens); 0: grown as needed.
INFERENCE_KV_CACHE_GB = max(0, int(os.environ.get("INFERENCE_KV_CACHE_GB", "0")))
# Chat models: a prompt starts from the stored key-value cache of its longest known beginning
# (the persona's prompt, computed once; a conversation's previous turn) instead of computing it.
INFERENCE_PREFIX_CACHE = env_bool("INFERENCE_PREFIX_CACHE", True)
# How many tokens of finished sequences (recent turns) a worker keeps the keys and values of,
# least recently used out first; SmolLM2-135M: 45 KiB a token, so 8192 tokens are 360 MiB.
INFERENCE_PREFIX_CACHE_TOKENS = int(os.environ.get("INFERENCE_PREFIX_CACHE_TOKENS", "8192"))

# Chat limits.
# Most conversations one account may keep (the list is paged, at most 200 a page).
CHAT_MAX_CONVERSATIONS = int(os.environ.get("CHAT_MAX_CONVERSATIONS", "500"))
CHAT_MAX_MESSAGE_CHARS = int(os.environ.get("CHAT_MAX_MESSAGE_CHARS", "2000"))
CHAT_RATE_LIMIT = os.environ.get("CHAT_RATE_LIMIT", "20/60")  # messages / seconds per user
# Tokens / seconds per user: what the user's replies cost the workers (chat.services.token_cost).
CHAT_TOKEN_BUDGET = os.environ.get("CHAT_TOKEN_BUDGET", "3000/60")
# A longer message is cut to this many tokens before it reaches the prompt (the reply says so).
CHAT_MAX_MESSAGE_TOKENS = int(os.environ.get("CHAT_MAX_MESSAGE_TOKENS", "384"))
# Streaming: the worker saves the partial reply and sends it to the page at most this often.
CHAT_STREAM_FLUSH_SECONDS = float(os.environ.get("CHAT_STREAM_FLUSH_SECONDS", "0.08"))
# A page whose reply in progress has had no frame for this long reads its messages again: the channel
# layer delivers a frame at most once, and a lost last frame would leave the page waiting.
CHAT_RESYNC_SECONDS = float(os.environ.get("CHAT_RESYNC_SECONDS", "5"))
# A streaming reply with no progress for this long has lost its worker and is marked failed.
CHAT_REPLY_STALE_SECONDS = int(os.environ.get("CHAT_REPLY_STALE_SECONDS", "20"))
# A reply no worker picked up in this long is marked failed.
CHAT_QUEUE_TIMEOUT_SECONDS = int(os.environ.get("CHAT_QUEUE_TIMEOUT_SECONDS", "900"))
# A reply still queued this long has its task sent again (a Redis restart loses queued tasks).
CHAT_QUEUE_RESEND_SECONDS = int(os.environ.get("CHAT_QUEUE_RESEND_SECONDS", "30"))
# A stop the worker has not acted on in this long (worker gone or hung) is enforced by the web process.
CHAT_STOP_GRACE_SECONDS = float(os.environ.get("CHAT_STOP_GRACE_SECONDS", "1.0"))
# A redelivered task restarts a half-done reply at most this many times in all.
CHAT_REPLY_MAX_ATTEMPTS = int(os.environ.get("CHAT_REPLY_MAX_ATTEMPTS", "2"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
