"""A real S3 API server for tests: moto in server mode, on loopback, checking signatures.

moto (`moto[server]`) implements the S3 REST API over HTTP, including AWS Signature
Version 4: once IAM authentication is on, a request signed with an unknown access key id
gets 403 `InvalidAccessKeyId`, one signed with the wrong secret 403
`SignatureDoesNotMatch`, and a key whose IAM policy does not allow the action 403
`AccessDenied`. `MotoS3` starts it, makes an IAM user with an access key allowed `s3:*`
(the first requests, before authentication is switched on), and a bucket; objects are read
back with boto3, a real S3 client.

Two ways to run it:

- in this process (`ThreadedMotoServer`, bound to 127.0.0.1): `stop()` and `start()` keep
  the buckets and keys, so a test can take the server away mid-stream and bring it back;
- as a child process (`python -m moto.server`), stopped by its PID: what the benchmark
  uses, so the server does not share the benchmark's interpreter.

moto does not verify `Content-MD5` or `x-amz-checksum-sha256` (wrong digests are
accepted), so tests check the digests by reading the objects back.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer

__all__ = ["AccessKey", "MotoS3", "free_port"]

REGION = "us-east-1"
_ALLOW_S3 = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An IAM access key moto knows."""

    access_key_id: str
    secret_access_key: str

    def secret(self) -> str:
        """The key as an S3 destination's secret (JSON)."""
        return json.dumps(
            {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key}
        )


class MotoS3:
    """moto's S3 on 127.0.0.1 with signature checks on (see the module docstring)."""

    def __init__(self, *, in_process: bool = True, port: int | None = None) -> None:
        self.in_process = in_process
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bucket = f"archive-{uuid.uuid4().hex[:12]}"
        self.key: AccessKey | None = None
        self._thread: ThreadedMotoServer | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._auth_before = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> MotoS3:
        """Start the server (again: in process, with the buckets and keys it had)."""
        if self.in_process:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self._thread = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            self._thread.start()
        else:
            env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self._wait_listening()
        if self.key is None:
            self._provision()
        return self

    def stop(self) -> None:
        """Stop the server (the child process by its PID)."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self._process.pid, signal.SIGKILL)
                self._process.wait()
            self._process = None

    def close(self) -> None:
        """Stop, and switch moto's authentication back to how it was in this process."""
        self.stop()
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = self._auth_before

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"moto did not listen on port {self.port}")

    def _provision(self) -> None:
        """An IAM user allowed s3:*, its access key, and the bucket; then authentication on."""
        if self.in_process:
            moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf")
        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        user = f"xavyo-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        made = iam.create_access_key(UserName=user)["AccessKey"]
        iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=_ALLOW_S3)
        self.key = AccessKey(made["AccessKeyId"], made["SecretAccessKey"])
        if self.in_process:
            moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        self.client().create_bucket(Bucket=self.bucket)

    # -- reading back -----------------------------------------------------------------------

    def client(self) -> Any:
        """A boto3 S3 client with the server's access key."""
        assert self.key is not None
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.key.access_key_id,
            aws_secret_access_key=self.key.secret_access_key,
        )

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every key in the bucket under `prefix`, sorted."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        """An object's bytes, as stored."""
        body: bytes = self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body
