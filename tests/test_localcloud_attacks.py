"""Issue 11's network attacks, from another process, against a real local cloud.

A bootstrapped local cloud runs as its own process (``tests.localstack``); the attacker is
another process: a small script with plain ``urllib`` and a hand-written SigV4 signer,
importing nothing of imgcli and reading nothing from the data dir. It knows the owner's
access key id (the old gate let in anything that merely named it) but not the secret.
Every attack must be refused, and the owner, looking afterwards with boto3, must find
nothing it could have done: no function created, no ``_apiprobe`` bucket, no recording.

A second part plays the owner's own client gone wrong (it is given the secret): a
replayed request from 2000, an expired pre-signed URL, a key of 1,025 bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.localstack import KEY, REPO, SECRET, bootstrap, local_client, local_cloud_env

ATTACKER = r"""
import base64, datetime, hashlib, hmac, io, json, sys, urllib.error, urllib.request, zipfile

given = json.load(sys.stdin)
ENDPOINT, KEY = given["endpoint"], given["key"]
HOST = ENDPOINT.removeprefix("http://")


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def signing_key(secret, date, service):
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in ("us-east-1", service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signed(method, path, body=b"", *, secret, service="s3", key=KEY, stamp=None, token=None,
           headers=None):
    stamp = stamp or now()
    sent = {"host": HOST, "x-amz-date": stamp, "x-amz-content-sha256": sha256(body)}
    sent.update(headers or {})
    if token is not None:
        sent["x-amz-security-token"] = token
    names = ";".join(sorted(sent))
    canonical = "\n".join([method, path, "", "".join(f"{n}:{sent[n]}\n" for n in sorted(sent)),
                           names, sha256(body)])
    scope = f"{stamp[:8]}/us-east-1/{service}/aws4_request"
    text = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, sha256(canonical.encode())])
    signature = hmac.new(signing_key(secret, stamp[:8], service), text.encode(),
                         hashlib.sha256).hexdigest()
    sent["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
                             f"SignedHeaders={names}, Signature={signature}")
    del sent["host"]
    return sent


def presigned(path, *, secret, stamp=None, expires=60):
    stamp = stamp or now()
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    query = "&".join([
        "X-Amz-Algorithm=AWS4-HMAC-SHA256", f"X-Amz-Credential={KEY}%2F{scope.replace('/', '%2F')}",
        f"X-Amz-Date={stamp}", f"X-Amz-Expires={expires}", "X-Amz-SignedHeaders=host"])
    canonical = "\n".join(["GET", path, query, f"host:{HOST}\n", "host", "UNSIGNED-PAYLOAD"])
    text = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, sha256(canonical.encode())])
    signature = hmac.new(signing_key(secret, stamp[:8], "s3"), text.encode(),
                         hashlib.sha256).hexdigest()
    return f"{path}?{query}&X-Amz-Signature={signature}"


def status(method, target, headers=None, body=None):
    request = urllib.request.Request(ENDPOINT + target, data=body, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def function_zip():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("attack.py", "import os\n\ndef handler(event, context):\n"
                         f"    os.system('id > {given['marker']}')\n    return 'ran'\n")
    return base64.b64encode(buffer.getvalue()).decode()


WRONG = "not-the-owners-secret"
results = {}
results["wrong secret"] = status("GET", "/", signed("GET", "/", secret=WRONG))
zero = signed("GET", "/", secret=WRONG)
zero["authorization"] = zero["authorization"].rsplit("Signature=", 1)[0] + "Signature=0"
results["Signature=0"] = status("GET", "/", zero)
results["date 2000-01-01"] = status(
    "GET", "/", signed("GET", "/", secret=WRONG, stamp="20000101T000000Z"))
results["credential text only"] = status("GET", "/", {
    "authorization": f"AWS4-HMAC-SHA256 Credential={KEY}/20250101/us-east-1/s3/aws4_request, "
                     "SignedHeaders=host, Signature=0", "x-amz-date": "20250101T000000Z"})
results["presigned, wrong secret"] = status(
    "GET", presigned(f"/{given['bucket']}/x.jpg", secret=WRONG))
for method in ("GET", "POST", "PUT", "DELETE", "HEAD"):
    for path in ("/moto-api/recorder/start-recording", "/moto-api/recorder/stop-recording",
                 "/moto-api/recorder/reset-recording", "/moto-api/recorder/replay-recording",
                 "/moto-api/seed?a=42", "/moto-api/reset", "/moto-api/data.json",
                 "/%6Doto-api/reset", "//moto-api/reset"):
        results[f"{method} {path}"] = status(method, path + (
            f"?X-Amz-Credential={KEY}/" if path.endswith("start-recording") else ""))
results["unsigned PUT /_apiprobe"] = status("PUT", "/_apiprobe", body=b"")
api = f"/_api/{given['api_id']}/images"
results["/%5Fapi/... unsigned"] = status("GET", "/%5Fapi/" + api.removeprefix("/_api/"))
results["/%5Fapi/... wrong secret"] = status(
    "GET", "/%5Fapi/" + api.removeprefix("/_api/"), signed("GET", "/%5Fapi/x", secret=WRONG))
results["HTTP API, wrong secret"] = status(
    "GET", api, signed("GET", api, secret=WRONG, service="execute-api"))
create = json.dumps({
    "FunctionName": "attack-function", "Runtime": "python3.11", "Handler": "attack.handler",
    "Role": "arn:aws:iam::123456789012:role/attack", "Code": {"ZipFile": function_zip()},
}).encode()
path = "/2015-03-31/functions"
results["CreateFunction, wrong secret"] = status(
    "POST", path, signed("POST", path, create, secret=WRONG, service="lambda"), create)
for name in ("attack-function", given["function"]):
    path = f"/2015-03-31/functions/{name}/invocations"
    results[f"Invoke {name}, wrong secret"] = status(
        "POST", path, signed("POST", path, b"{}", secret=WRONG, service="lambda"), b"{}")
role = given["role"]
results["role key without its token"] = status(
    "GET", "/", signed("GET", "/", secret=role["secret"], key=role["key"]))
results["role key, a foreign token"] = status(
    "GET", "/", signed("GET", "/", secret=role["secret"], key=role["key"], token="forged"))

# The owner's own client gone wrong: it has the secret.
owner = given["secret"]
results["owner: a request from 2000"] = status(
    "GET", "/", signed("GET", "/", secret=owner, stamp="20000101T000000Z"))
past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=120))
results["owner: presigned URL past its expiry"] = status(
    "GET", presigned(f"/{given['bucket']}/x.jpg", secret=owner,
                     stamp=past.strftime("%Y%m%dT%H%M%SZ"), expires=60))
for size in (1024, 1025):
    path = f"/{given['bucket']}/attack/{'k' * (size - len('attack/'))}"
    results[f"owner: key of {size} bytes"] = status(
        "PUT", path, signed("PUT", path, b"x", secret=owner), b"x")
json.dump(results, sys.stdout)
"""


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("attacks")
    with local_cloud_env(base, "attacks") as env:
        stack = bootstrap(env)
        functions = local_client(stack, "lambda").list_functions()["Functions"]
        credentials = local_client(stack, "sts").assume_role(
            RoleArn="arn:aws:iam::123456789012:role/any", RoleSessionName="attacker"
        )["Credentials"]
        api_id = stack["api_url"].rstrip("/").rsplit("/", 1)[1]
        marker = base / "ran-as-the-owner"
        given = {
            "endpoint": stack["endpoint_url"],
            "key": KEY,
            "secret": SECRET,
            "bucket": stack["bucket"],
            "api_id": api_id,
            "function": functions[0]["FunctionName"],
            "role": {"key": credentials["AccessKeyId"], "secret": credentials["SecretAccessKey"]},
            "marker": str(marker),
        }
        recording = REPO / "moto_recording"
        recorded_before = recording.exists()
        script = base / "attacker.py"
        script.write_text(ATTACKER)
        ran = subprocess.run(
            [sys.executable, "-I", str(script)],  # isolated: no imgcli on its path
            input=json.dumps(given),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=base,
            env={"PATH": "/usr/bin:/bin"},
        )
        assert ran.returncode == 0, ran.stderr
        yield {
            "results": json.loads(ran.stdout),
            "stack": stack,
            "marker": marker,
            "recorded": recording.exists() and not recorded_before,
        }


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        ("wrong secret", {403}),
        ("Signature=0", {403}),
        ("date 2000-01-01", {403}),
        ("credential text only", {403}),
        ("presigned, wrong secret", {403}),
        ("unsigned PUT /_apiprobe", {403}),
        ("/%5Fapi/... unsigned", {404}),
        ("/%5Fapi/... wrong secret", {404}),
        ("HTTP API, wrong secret", {403}),
        ("CreateFunction, wrong secret", {403}),
        ("Invoke attack-function, wrong secret", {403}),
        ("role key without its token", {403}),
        # S3's InvalidToken is a 400; before role sessions are known, an unknown key's 403.
        ("role key, a foreign token", {400, 403}),
        ("owner: a request from 2000", {403}),
        ("owner: presigned URL past its expiry", {403}),
        ("owner: key of 1025 bytes", {400}),
    ],
)
def test_each_attack_is_refused(attacked: dict[str, Any], attack: str, expected: set[int]) -> None:
    assert attacked["results"][attack] in expected


def test_invoking_a_stack_function_with_a_wrong_signature_is_refused(
    attacked: dict[str, Any],
) -> None:
    invokes = [name for name in attacked["results"] if name.startswith("Invoke ")]
    assert len(invokes) == 2
    assert all(attacked["results"][name] == 403 for name in invokes)


def test_moto_s_api_is_unreachable_by_any_path_and_method(attacked: dict[str, Any]) -> None:
    moto_api = {k: v for k, v in attacked["results"].items() if "oto-api" in k}

    assert len(moto_api) == 45
    assert set(moto_api.values()) <= {403, 404}, moto_api
    assert not attacked["recorded"]


def test_the_attacks_left_nothing_behind(attacked: dict[str, Any]) -> None:
    stack = attacked["stack"]
    functions = local_client(stack, "lambda").list_functions()["Functions"]
    buckets = local_client(stack, "s3").list_buckets()["Buckets"]

    assert "attack-function" not in [f["FunctionName"] for f in functions]
    assert "_apiprobe" not in [b["Name"] for b in buckets]
    assert not Path(attacked["marker"]).exists()


def test_the_owner_s_client_still_works_within_aws_s_limits(attacked: dict[str, Any]) -> None:
    stack = attacked["stack"]
    objects = local_client(stack, "s3").list_objects_v2(Bucket=stack["bucket"], Prefix="attack/")

    assert attacked["results"]["owner: key of 1024 bytes"] == 200
    assert [len(o["Key"]) for o in objects.get("Contents", [])] == [1024]
