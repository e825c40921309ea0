"""The Python Docker SDK (docker-py) pointed at Berth's Docker proxy.

Run by `python_docker_sdk` in tests/docker_cli.rs, which passes:
  BERTH_SDK_URL        tcp://127.0.0.1:PORT/api/endpoints/ID/docker
  BERTH_SDK_TOKEN      a JWT for Berth
  BERTH_SDK_IMAGE      an image present on the engine
  BERTH_SDK_CONTAINER  a container name to use (removed by the caller too)
  BERTH_SDK_RESTRICTED "1" when the token is a standard user's on an
                       endpoint with Berth's secure default settings
Prints "SDK OK" and exits 0 when every check passed; any failure raises.
"""

import os
import sys

import docker
from docker.errors import APIError

URL = os.environ["BERTH_SDK_URL"]
TOKEN = os.environ["BERTH_SDK_TOKEN"]
IMAGE = os.environ["BERTH_SDK_IMAGE"]
NAME = os.environ["BERTH_SDK_CONTAINER"]
RESTRICTED = os.environ.get("BERTH_SDK_RESTRICTED") == "1"
AUTH = "Bearer " + TOKEN


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# The low-level client. version= is explicit: "auto" would ask /version
# before there is a chance to add the header.
api = docker.APIClient(base_url=URL, version="1.41", timeout=60)
api.headers["Authorization"] = AUTH
check(api.ping() is True, "APIClient.ping")
v = api.version()
check(v.get("ApiVersion") and v.get("Os") == "linux", "APIClient.version: %r" % (v,))

# Without the header Berth refuses, and says so in Portainer's error shape.
anon = docker.APIClient(base_url=URL, version="1.41", timeout=60)
try:
    anon.version()
    raise AssertionError("an anonymous client was let through")
except APIError as e:
    check(e.response.status_code == 401, "anonymous: %r" % (e,))

# The high-level client, sharing the same header mechanism.
client = docker.DockerClient(base_url=URL, version="1.41", timeout=60)
client.api.headers["Authorization"] = AUTH
check(client.ping() is True, "DockerClient.ping")
check(client.version()["ApiVersion"], "DockerClient.version")
out = client.containers.run(IMAGE, ["echo", "hello from docker-py"], name=NAME, remove=True)
check(out == b"hello from docker-py\n", "containers.run output: %r" % (out,))

# Detached: logs, exec, wait, remove.
c = client.containers.run(IMAGE, ["sh", "-c", "echo started; sleep 30"], name=NAME, detach=True)
try:
    code, output = c.exec_run(["sh", "-c", "echo $((6 * 7))"])
    check(code == 0 and output == b"42\n", "exec_run: %r %r" % (code, output))
    logs = c.logs()
    check(b"started" in logs, "logs: %r" % (logs,))
    names = [x.name for x in client.containers.list()]
    check(NAME in names, "containers.list: %r" % (names,))
    c.kill()
    c.wait(timeout=30)
finally:
    c.remove(force=True)

if RESTRICTED:
    # The endpoint's secure default refuses privileged mode, readably.
    try:
        client.containers.run(IMAGE, ["true"], privileged=True, remove=True)
        raise AssertionError("a privileged container was created")
    except APIError as e:
        check(e.response.status_code == 403, "privileged: %r" % (e,))
        check("privileged" in str(e), "privileged: %r" % (e,))

print("SDK OK")
sys.exit(0)
