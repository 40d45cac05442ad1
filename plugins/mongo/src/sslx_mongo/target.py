"""Where runs go in MongoDB: a URL (with any credentials) and a database,
the client every sslx write goes through, and the password kept out of every
message.

Credentials come only from the URL (``--mongo`` or ``SSLX_MONGO_URL``); every
message and record shows it through :func:`redact_url` / :func:`redact_text`.

Every write is journaled (``j=True``): the server acknowledges a write only
once it is in its on-disk journal, so a write sslx was told about survives the
server being killed or losing power. With the default write concern (``w=1``
without ``j``) a server acknowledges a write still held in memory: killing
SecantusDB with SIGKILL just after a heartbeat lost 7-8 of 20 acknowledged
``train.loss`` points; with ``j=True`` none. Majority write
concern was not chosen: on a standalone server (the common case for a lab's
Omniboard database) it does not imply journaling, while ``j=True`` does on a
standalone server and on a replica set's primary. A URL may still ask for more
(``?w=majority``): its ``w`` is kept and ``j=True`` added to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pymongo
from pymongo import uri_parser
from pymongo.errors import ConfigurationError, ConnectionFailure, InvalidURI, OperationFailure

from sslx.errors import UserError

DEFAULT_DB = "sacred"  # Sacred's and Omniboard's default database name
# Short timeouts: an unreachable server costs a run at most a few seconds, once.
CLIENT_OPTIONS: dict[str, Any] = {"serverSelectionTimeoutMS": 2000, "connectTimeoutMS": 2000, "socketTimeoutMS": 20000}
AUTH_FAILED = 18  # the server's error code for a wrong user name or password (AuthenticationFailed)
INFO_KEY = "mongo"  # the file store's note (info.json) of where the run went in the database

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z0-9+.-]+://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@")


def redact_url(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def redact_text(text: str, url: str) -> str:
    """``text`` with the URL's password removed, in any spelling it may take."""
    m = _USERINFO.match(url)
    if m and m["password"]:
        plain = unquote(m["password"])
        for spelling in sorted({m["password"], plain, quote(plain, safe="")}, key=len, reverse=True):
            text = text.replace(spelling, "***")
    return text


def is_auth_failure(exc: BaseException) -> bool:
    """Whether a database error is the server refusing the URL's credentials."""
    return isinstance(exc, OperationFailure) and exc.code == AUTH_FAILED


@dataclass(frozen=True)
class MongoTarget:
    """Where runs go: a MongoDB URL (with any credentials) and a database.

    ``journal`` is the write concern's ``j``; only a measurement turns it off
    (``benchmarks/mongo_overhead.py``): sslx itself always journals.
    """

    url: str = field(repr=False)
    db: str = DEFAULT_DB
    journal: bool = True

    @classmethod
    def from_options(cls, url: str | None, db: str | None) -> MongoTarget | None:
        """The target of ``--mongo URL`` / ``--mongo-db NAME`` (or their
        environment variables), checked; None when no URL is given."""
        if not url:
            return None
        try:
            parsed = uri_parser.parse_uri(url, warn=True)
            pymongo.MongoClient(url, connect=False, journal=True, **CLIENT_OPTIONS).close()  # e.g. w=0 with j
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            raise UserError(
                f"--mongo / SSLX_MONGO_URL: {redact_url(url)!r} is not a MongoDB URL sslx can write to "
                f"({redact_text(str(exc), url)}). Give one like mongodb://HOST:27017 or "
                "mongodb://USER:PASSWORD@HOST:27017/?authSource=admin."
            ) from None
        return cls(url, db or parsed.get("database") or DEFAULT_DB)

    @property
    def shown(self) -> str:
        """The URL as every message and record shows it (password redacted)."""
        return redact_url(self.url)

    @property
    def where(self) -> str:
        """``MongoDB URL (database D)``, for messages."""
        return f"MongoDB {self.shown} (database {self.db})"

    def client(self) -> pymongo.MongoClient:
        """A client whose writes are journaled (see the module's docstring)
        and that gives up after ~2 s when the server is unreachable (it
        connects lazily: constructing it never blocks)."""
        return pymongo.MongoClient(self.url, journal=self.journal, **CLIENT_OPTIONS)

    def database(self, client: pymongo.MongoClient) -> Any:
        return client[self.db]

    def describe_error(self, exc: BaseException) -> str:
        """What went wrong with the database, in one line without the
        password: an authentication failure says so (it is not "unreachable")."""
        text = redact_text(f"{type(exc).__name__}: {exc}", self.url).splitlines()[0]
        text = re.split(r" \(configured timeouts|, Timeout: |, full error: ", text)[0][:300]  # pymongo's details
        if is_auth_failure(exc):
            return f"authentication failed ({text}): check the user name and password in the URL and its authSource"
        if isinstance(exc, ConnectionFailure):
            return f"unreachable ({text})"
        return text

    def sync_command(self, run_dir: Path | str) -> str:
        """The command that completes ``run_dir`` in this database: the URL
        shown when it holds no password, else the placeholder URL."""
        url = self.url if self.shown == self.url else "URL"
        db = f" --mongo-db {self.db}" if self.db != DEFAULT_DB else ""
        return f"sslx sync {run_dir} --mongo {url}{db}"
