# kscore's server image: the API by default; the same image runs the worker and Flower.
#   docker build -t kscore:latest .
#   API:    docker run -p 8080:8080 -e KSCORE_REDIS_URL=redis://redis:6379/0 kscore:latest
#   worker: docker run -e KSCORE_REDIS_URL=... kscore:latest \
#             celery -A workers.main worker -Q online,deploy,batch --concurrency 1 --loglevel INFO
#   Flower: docker run -p 5555:5555 -e KSCORE_REDIS_URL=... -e FLOWER_BASIC_AUTH=user:password \
#             kscore:latest celery -A workers.main flower --address=0.0.0.0 --port=5555
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 kscore \
    && useradd --system --uid 10001 --gid kscore --home-dir /app --shell /usr/sbin/nologin kscore \
    && mkdir -p /app /data/model-cache \
    && chown -R kscore:kscore /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY workers ./workers
COPY shared ./shared
COPY kscore ./kscore
# The server extras only (no dev tools); a regular install, so the source tree stays read-only.
RUN pip install --no-cache-dir '.[server]'

ENV KSCORE_DATA_DIR=/data
USER 10001:10001
EXPOSE 8080 5555
VOLUME ["/data"]

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

CMD ["gunicorn", "-b", "0.0.0.0:8080", "-k", "gthread", "-w", "2", "--threads", "32", "--timeout", "120", "--access-logfile", "-", "api.wsgi:app"]
