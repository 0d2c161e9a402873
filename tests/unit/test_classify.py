"""classify: real failures from real tools land in the category that tells us whether to try again."""
import msgspec
import pytest

from services.domain.classify import BUILTIN, Classification, Pattern, classify

REAL_WORLD = [
    # curl
    ("curl: (6) Could not resolve host: api.example.internal", "network"),
    ("curl: (7) Failed to connect to localhost port 8080 after 0 ms: Couldn't connect to server", "network"),
    ("curl: (28) Operation timed out after 30001 milliseconds with 0 bytes received", "timeout"),
    ("curl: (35) OpenSSL SSL_connect: SSL_ERROR_SYSCALL in connection to example.com:443", "network"),
    ("curl: (22) The requested URL returned error: 503", "temporary"),
    ("curl: (22) The requested URL returned error: 404", "permanent"),
    ("curl: (22) The requested URL returned error: 401", "authentication"),
    ("curl: (22) The requested URL returned error: 500", "dependency"),
    ("curl: (60) SSL certificate problem: unable to get local issuer certificate", "configuration"),
    ("curl: (52) Empty reply from server", "network"),
    # kubectl
    ("Unable to connect to the server: dial tcp 10.0.0.1:6443: i/o timeout", "network"),
    ("The connection to the server localhost:8080 was refused - did you specify the right host or port?", "network"),
    ("Unable to connect to the server: net/http: TLS handshake timeout", "timeout"),
    ('Error from server (Forbidden): pods is forbidden: User "ci" cannot list resource "pods" in API group ""',
     "authorization"),
    ("error: You must be logged in to the server (Unauthorized)", "authentication"),
    ('Error from server (NotFound): deployments.apps "web" not found', "permanent"),
    ("Error from server (ServiceUnavailable): the server is currently unable to handle the request", "temporary"),
    ("error: unknown flag: --replica", "configuration"),
    ("Error from server (InternalError): Internal error occurred: failed calling webhook: 500 Internal Server Error",
     "dependency"),
    # psql
    ('psql: error: connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused', "network"),
    ('psql: could not connect to server: No such file or directory\n\tIs the server running locally and accepting '
     'connections on Unix domain socket "/var/run/postgresql/.s.PGSQL.5432"?', "network"),
    ('psql: error: connection to server at "db" (10.0.0.5), port 5432 failed: '
     'FATAL:  password authentication failed for user "app"', "authentication"),
    ("psql: error: FATAL:  sorry, too many clients already", "temporary"),
    ("FATAL:  remaining connection slots are reserved; too many connections for role \"app\"", "temporary"),
    ("psql: error: FATAL:  the database system is starting up", "temporary"),
    ('psql: error: connection to server on socket "/tmp/.s.PGSQL.5432" failed: FATAL:  database "shop" does not exist',
     "configuration"),
    ("ERROR:  deadlock detected\nDETAIL:  Process 123 waits for ShareLock on transaction 456", "temporary"),
    ("ERROR:  could not serialize access due to concurrent update", "temporary"),
    # ssh
    ("ssh: connect to host 10.0.0.9 port 22: Connection timed out", "network"),
    ("Connection timed out during banner exchange\nConnection to 10.0.0.9 port 22 timed out", "timeout"),
    ("Host key verification failed.", "configuration"),
    ("@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @", "configuration"),
    ("deploy@10.0.0.9: Permission denied (publickey).", "authentication"),
    ("deploy@10.0.0.9: Permission denied (publickey,password).", "authentication"),
    ("ssh: connect to host web-1 port 22: No route to host", "network"),
    ("ssh: Could not resolve hostname web-1: Name or service not known", "network"),
    ("kex_exchange_identification: read: Connection reset by peer", "network"),
    # python requests
    ("requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api', port=443): "
     "Max retries exceeded with url: / (Caused by NewConnectionError("
     "'<urllib3.connection.HTTPSConnection object>: Failed to establish a new connection: "
     "[Errno 111] Connection refused'))", "network"),
    ("requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='api', port=443): Read timed out. (read timeout=10)",
     "timeout"),
    ("requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: https://api/x", "temporary"),
    ("requests.exceptions.HTTPError: 500 Server Error: Internal Server Error for url: https://api/x", "dependency"),
    ("requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://api/x", "authentication"),
    ("requests.exceptions.HTTPError: 404 Client Error: Not Found for url: https://api/x", "permanent"),
    ("requests.exceptions.HTTPError: 429 Client Error: Too Many Requests for url: https://api/x", "temporary"),
    ("requests.exceptions.SSLError: HTTPSConnectionPool(host='api', port=443): [SSL: CERTIFICATE_VERIFY_FAILED] "
     "certificate verify failed: self signed certificate", "configuration"),
    ("requests.exceptions.ConnectionError: ('Connection aborted.', RemoteDisconnected('Remote end closed connection "
     "without response'))", "network"),
    # aiohttp
    ("aiohttp.client_exceptions.ClientConnectorError: Cannot connect to host api:443 ssl:default "
     "[Connect call failed ('10.0.0.3', 443)]", "network"),
    ("aiohttp.client_exceptions.ServerDisconnectedError: Server disconnected", "network"),
    ("aiohttp.client_exceptions.ClientConnectorCertificateError: Cannot connect to host api:443 ssl:True "
     "[SSLCertVerificationError: (1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed')]", "configuration"),
    ("aiohttp.client_exceptions.ClientResponseError: 503, message='Service Unavailable'", "temporary"),
    ("asyncio.exceptions.TimeoutError", "timeout"),
    # docker
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", "network"),
    ("Error response from daemon: toomanyrequests: You have reached your pull rate limit.", "temporary"),
    ("docker: Error response from daemon: pull access denied for acme/web, repository does not exist or may require "
     "'docker login': denied: requested access to the resource is denied.", "authorization"),
    ("Error response from daemon: manifest for acme/web:v9 not found: manifest unknown", "permanent"),
    ("write /var/lib/docker/tmp/GetImageBlobSource: no space left on device", "resource"),
    ("Error response from daemon: No such container: web", "permanent"),
    ("unauthorized: authentication required", "authentication"),
    # systemctl
    ("Failed to restart nginx.service: Unit nginx.service not found.", "configuration"),
    ("Failed to start web.service: Unit web.service is masked.", "configuration"),
    ("Failed to restart nginx.service: Access denied", "authorization"),
    ("Failed to connect to bus: No such file or directory", "configuration"),
    ("Job for web.service failed because a fatal signal was delivered causing the control process to dump core.\n"
     "web.service: A process of this unit has been killed by the OOM killer.", "resource"),
    ("web.service: Failed with result 'oom-kill'. Out of memory: Killed process 4242 (java)", "resource"),
    # apt
    ("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (apt)", "temporary"),
    ("E: Unable to locate package nginxx", "configuration"),
    ("Err:1 http://archive.ubuntu.com/ubuntu jammy InRelease\n  Temporary failure resolving 'archive.ubuntu.com'",
     "network"),
    ("E: Failed to fetch http://archive.ubuntu.com/ubuntu/pool/main/n/nginx.deb  404  Not Found [IP: 1.2.3.4 80]",
     "permanent"),
    ("E: You don't have enough free space in /var/cache/apt/archives/.", "resource"),
    ("E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)", "authorization"),
    # everything else
    ("fork: Cannot allocate memory", "resource"),
    ("java.lang.OutOfMemoryError: Java heap space", "resource"),
    ("Last State: Terminated  Reason: OOMKilled", "resource"),
    ("bash: line 1: terraform: command not found", "configuration"),
    ("sh: 1: terraform: not found", "configuration"),
    ("Error: invalid configuration: no configuration has been provided", "configuration"),
    ("schema validation failed: spec.replicas must be an integer", "validation"),
    ("dial tcp: lookup api.internal on 10.0.0.2:53: no such host", "network"),
    ("ping: unknown host: temporary failure in name resolution", "network"),
    ("read: Resource temporarily unavailable", "temporary"),
    ("Error: token has expired; run `login` again", "authentication"),
    ("Error: rate limit exceeded, retry in 30s", "temporary"),
    ("the tests did not pass", "unknown"),
]


@pytest.mark.parametrize(("error", "category"), REAL_WORLD, ids=[e[:60] for e, _ in REAL_WORLD])
def test_a_real_world_error_lands_in_its_category(error, category):
    assert classify(error, {}).category == category


def test_the_table_is_large_enough_to_mean_something():
    assert len(REAL_WORLD) >= 60


def test_a_shell_failure_is_read_from_its_stderr_too():
    outputs = {"returncode": 1, "stdout": "", "stderr": "psql: error: FATAL:  the database system is starting up"}
    result = classify("command exited with code 1: ...", outputs)
    assert result == Classification("temporary", "pattern 'psql database starting up'",
                                     "the database system is (?:starting up|shutting down|in recovery mode)")


def test_a_pattern_match_names_the_regex_that_matched():
    result = classify("connect: Connection refused", {})
    assert result.signal == "pattern 'connection refused'"
    assert result.pattern and "connection refused" in result.pattern


def test_a_call_an_open_breaker_refused_is_a_dependency_failure_whatever_its_reason_says():
    refused = "circuit http://db:80 is open until 12:00:30Z (3 failures in a row, last: connection refused); not called"
    result = classify(refused, {"circuit_open": "http://db:80"}, "dependency")
    assert result == Classification("dependency", "circuit http://db:80 open")


def test_nothing_matches_gives_unknown():
    assert classify("it went wrong", {}) == Classification("unknown", "no match", None)


# Structured signals

@pytest.mark.parametrize(("status", "category"), [
    (401, "authentication"), (403, "authorization"),
    (408, "temporary"), (425, "temporary"), (429, "temporary"), (502, "temporary"), (503, "temporary"), (504,
                                                                                                         "temporary"),
    (500, "dependency"), (501, "dependency"), (599, "dependency"),
    (400, "permanent"), (404, "permanent"), (409, "permanent"), (422, "permanent"), (410, "permanent"),
])
def test_an_http_status_decides_before_any_text(status, category):
    result = classify("connection refused", {"status_code": status, "retry_after": 5.0})
    assert result == Classification(category, f"http status {status}", None)


def test_a_status_below_400_says_nothing_and_the_text_decides():
    assert classify("GET https://x returned HTTP 200 OK, expected 201", {"status_code": 200}).category == "unknown"


@pytest.mark.parametrize(("code", "category"), [(126, "configuration"), (127, "configuration"),
                                                (137, "resource"), (-9, "resource")])
def test_an_exit_code_that_tells_decides(code, category):
    result = classify("command exited", {"returncode": code, "stderr": "Connection refused"})
    assert result == Classification(category, f"exit code {code}", None)


def test_an_ordinary_exit_code_leaves_it_to_the_text():
    assert classify("command exited with code 1", {"returncode": 1,
                                                   "stderr": "No space left on device"}).category == "resource"


@pytest.mark.parametrize("hint", ["timeout", "configuration", "cancelled", "interrupted", "validation"])
def test_a_decisive_hint_from_the_action_wins(hint):
    assert classify("503 Service Unavailable", {"status_code": 503}, hint=hint) == Classification(hint, f"hint {hint}")


def test_another_hint_only_fills_in_when_nothing_else_matches():
    assert classify("GET https://x: too many redirects", {}, hint="permanent") == \
        Classification("permanent", "fallback hint permanent")
    assert classify("cannot connect: Connection refused", {}, hint="dependency").category == "network"


def test_a_boolean_is_not_a_status_code():
    assert classify("", {"status_code": True, "returncode": True}).category == "unknown"


# Configured patterns

def test_a_configured_pattern_beats_the_builtin_table():
    mine = Pattern(regex=r":5432.*connection refused", category="dependency")
    result = classify("dial tcp 10.0.0.5:5432: connect: Connection refused", {}, extra_patterns=[mine])
    assert result == Classification("dependency", "configured pattern ':5432.*connection refused'", mine.regex)


def test_a_configured_pattern_is_case_insensitive_and_first_wins():
    first, second = Pattern(regex="QUOTA", category="resource"), Pattern(regex="quota", category="temporary")
    assert classify("quota exhausted", {}, extra_patterns=[first, second]).category == "resource"


def test_structured_signals_beat_configured_patterns():
    mine = Pattern(regex="refused", category="dependency")
    assert classify("refused", {"status_code": 401}, extra_patterns=[mine]).category == "authentication"
    assert classify("refused", {"returncode": 127}, extra_patterns=[mine]).category == "configuration"


def test_a_configured_pattern_decodes_from_config_and_a_bad_regex_is_refused():
    decoded = msgspec.json.decode(b'{"regex": "vault sealed", "category": "dependency"}', type=Pattern)
    assert classify("Error: Vault is sealed", {}, extra_patterns=[decoded]).category == "unknown"
    assert classify("vault SEALED", {}, extra_patterns=[decoded]).category == "dependency"
    with pytest.raises(msgspec.ValidationError, match="not a valid regular expression"):
        msgspec.json.decode(b'{"regex": "(", "category": "dependency"}', type=Pattern)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"regex": "x", "category": "flaky"}', type=Pattern)


def test_every_builtin_row_has_its_own_name():
    names = [name for _, _, name in BUILTIN]
    assert len(names) == len(set(names))
