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
# The services' homes (compose mounts a named volume there): made here and nobody's, or a new volume is root's
# and the identity, learning and web services cannot write their files.
RUN mkdir /data && chown nobody:nogroup /data && chmod 0700 /data
USER nobody
