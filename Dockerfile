# One image for every service: `safetyhub run <service>` against the cluster's NATS and PostgreSQL.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY proto ./proto
RUN pip install --no-cache-dir . && useradd --system --uid 10001 safetyhub
COPY sites ./sites
USER 10001
EXPOSE 8080
ENTRYPOINT ["safetyhub"]
CMD ["run", "ingest"]
