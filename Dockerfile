FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY workers ./workers
COPY shared ./shared
COPY kscore ./kscore
RUN pip install --no-cache-dir '.[server]'
ENV KSCORE_DATA_DIR=/data
EXPOSE 8080
CMD ["gunicorn", "-b", "0.0.0.0:8080", "-k", "gthread", "api.wsgi:app"]
