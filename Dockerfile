# One image for every service; compose.yaml picks the module each container runs.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY events events
COPY services services
COPY projections projections
COPY ui ui
COPY app app
COPY bench bench
COPY examples examples
RUN pip install --no-cache-dir .
USER nobody
