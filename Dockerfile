# The image of every process: web, workers and beat differ only by their command (see
# docker-compose.yml and the Procfile).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# libjpeg-turbo's library for the fast JPEG path (imaging/encode.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libturbojpeg0 \
    && rm -rf /var/lib/apt/lists/*

# The runtime dependencies, pinned by requirements.lock, in a layer of their own so that a
# change to the code does not reinstall them.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c requirements.lock -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY manage.py ./
COPY accounts ./accounts
COPY config ./config
COPY imaging ./imaging
COPY net ./net
COPY processing ./processing

RUN useradd --create-home --uid 10001 imgsvc \
    && mkdir -p /app/var /app/storage \
    && chown imgsvc /app/var /app/storage
USER imgsvc

EXPOSE 8000
CMD ["python", "-m", "config.web_server", "config.wsgi", "--config", "config/gunicorn.py"]
