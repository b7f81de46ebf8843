# One image for both process groups: `uvicorn paperboy_api.app:app` and `python -m paperboy_worker`.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Runtime dependencies only, pinned by the lock file; test tools never enter the image.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY paperboy_api ./paperboy_api
COPY paperboy_worker ./paperboy_worker
RUN pip install --no-deps . && useradd --create-home --uid 10001 paperboy
USER paperboy

EXPOSE 8080
CMD ["uvicorn", "paperboy_api.app:app", "--host", "0.0.0.0", "--port", "8080", "--no-access-log", "--http", "paperboy_api.protocol:Protocol"]
