"""S3 takes every key AWS takes: control characters, newlines, 1,024 bytes.

S3 stores any UTF-8 key up to 1,024 bytes, control characters included. moto 5.2.5 does
not, in four places, and :func:`install` fixes each as AWS behaves:

- **Routing.** moto's path-style object route is the regex ``.+``, which stops at a
  newline: ``PUT /bucket/a%0Ab.jpg`` matched no route and answered 404 (the issue's "a
  file name with a newline fails as PutObject failed (404)"). The route becomes
  ``[\\s\\S]+``, which matches every character. moto rebuilds its S3 URL table on every
  read (``S3Backend._url_module`` reloads ``moto.s3.urls``), so the property is wrapped
  rather than the table edited once.
- **Listings with ``encoding-type=url``.** S3 then URL-encodes every key-like element,
  precisely because XML 1.0 cannot carry some characters: ``Key``, ``Prefix``,
  ``Delimiter``, ``CommonPrefixes/Prefix``, and ``Marker``/``NextMarker`` (ListObjects),
  ``StartAfter`` (ListObjectsV2), ``KeyMarker``/``NextKeyMarker`` (ListObjectVersions);
  continuation tokens are opaque and stay as they are. boto3 asks for it by default and
  decodes exactly those. moto encoded only ``Key`` (and ``Prefix`` in V2), and nothing at
  all in ListObjectVersions, so a ``StartAfter`` or a version listing holding a control
  character produced XML no parser reads (botocore reported a 500), and a version listed
  with ``+`` or ``%`` in its key came back altered. Here moto lists without encoding and
  the elements are encoded afterwards, form-style as S3 does (a space is ``+``, ``/`` is
  kept). Another ``encoding-type`` is S3's ``InvalidArgument``.
- **Characters XML 1.0 cannot carry, without ``encoding-type``.** S3 writes them as
  numeric character references (``<Key>a&#x1;b</Key>``; tab, newline and carriage return
  as they are), which strict parsers refuse: that is S3's answer, and why the encoding
  exists. moto wrote the raw byte. Every XML body moto's S3 serializer writes now has
  S3's references (``S3Serializer._serialize_body``), listings, errors and results alike.
- **DeleteObjects.** Its request is XML, so a key XML 1.0 cannot carry cannot be in it:
  S3 answers ``MalformedXML`` (400), moto crashed with a 500 on the parser's error.

These are moto internals: :func:`check_moto_internals` (run by ``install`` and by a test)
fails loudly when an upgrade moves them.
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote_plus
from xml.parsers.expat import ExpatError

from imgcli.localcloud import MotoInternalsChanged

#: moto 5.2.5's path-style object route, and the one that matches every character.
KEY_ROUTE: Final = "{0}/(?P<bucket_name_path>[^/]+)/(?P<key_name>.+)"
KEY_ROUTE_ANY_CHARACTER: Final = "{0}/(?P<bucket_name_path>[^/]+)/(?P<key_name>[\\s\\S]+)"
#: The virtual-host object route (not used by the local cloud's path-style clients).
HOST_KEY_ROUTE: Final = "{0}/(?P<key_name>/.*)$"
HOST_KEY_ROUTE_ANY_CHARACTER: Final = "{0}/(?P<key_name>/[\\s\\S]*)$"
_ROUTES: Final[Mapping[str, str]] = {
    KEY_ROUTE: KEY_ROUTE_ANY_CHARACTER,
    HOST_KEY_ROUTE: HOST_KEY_ROUTE_ANY_CHARACTER,
}


class Listing:
    """Which elements of one listing's result S3 URL-encodes under ``encoding-type=url``."""

    def __init__(self, top: Sequence[str], nested: Sequence[tuple[str, str]]) -> None:
        self.top = tuple(top)
        self.nested = tuple(nested)


#: moto's listing methods, by the result each builds.
LISTINGS: Final[Mapping[str, Listing]] = {
    "list_objects": Listing(
        ("Prefix", "Delimiter", "Marker", "NextMarker"),
        (("Contents", "Key"), ("CommonPrefixes", "Prefix")),
    ),
    "list_objects_v2": Listing(
        ("Prefix", "Delimiter", "StartAfter"),
        (("Contents", "Key"), ("CommonPrefixes", "Prefix")),
    ),
    "list_object_versions": Listing(
        ("Prefix", "Delimiter", "KeyMarker", "NextKeyMarker"),
        (("Versions", "Key"), ("DeleteMarkers", "Key"), ("CommonPrefixes", "Prefix")),
    ),
}
_DELETE_KEYS: Final = "_bucket_response_delete_keys"
_SERIALIZE_BODY: Final = "_serialize_body"
_ENCODING: Final = "encoding-type"
#: Characters XML 1.0 cannot carry (``Char`` in the XML 1.0 specification).
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def url_encoded(value: str) -> str:
    """``value`` as S3 encodes a key under ``encoding-type=url``: form-style (``a b`` is
    ``a+b``, ``a+b`` is ``a%2Bb``), with ``/`` kept."""
    return quote_plus(value, safe="/")


def character_references(xml: str) -> str:
    """``xml`` with each character XML 1.0 cannot carry written as S3 writes it
    (``&#x1;``); tab, newline and carriage return stay as they are."""
    return _NOT_XML.sub(lambda found: f"&#x{ord(found.group()):x};", xml)


def encode_listing(result: dict[str, Any], listing: Listing) -> dict[str, Any]:
    """A listing's result with the elements S3 encodes under ``encoding-type=url`` encoded."""
    encoded = dict(result)
    for name in listing.top:
        if isinstance(encoded.get(name), str):
            encoded[name] = url_encoded(encoded[name])
    for group, name in listing.nested:
        members = encoded.get(group)
        if isinstance(members, list):
            encoded[group] = [
                {**member, name: url_encoded(member[name])}
                if isinstance(member, dict) and isinstance(member.get(name), str)
                else member
                for member in members
            ]
    encoded["EncodingType"] = "url"
    return encoded


def install() -> Callable[[], None]:
    """Make moto's S3 take and list every key S3 does; return the function that undoes it.

    Process-wide (it patches moto's classes), so at most one installation at a time. Install
    before moto's S3 application is built (its routes are read then).
    """
    check_moto_internals()
    from moto.core.serialize import S3Serializer
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    with _install_lock:
        originals: dict[tuple[type, str], Any] = {
            (S3Backend, "_url_module"): vars(S3Backend)["_url_module"],
            (S3Serializer, _SERIALIZE_BODY): vars(S3Serializer)[_SERIALIZE_BODY],
            (S3Response, _DELETE_KEYS): vars(S3Response)[_DELETE_KEYS],
            **{(S3Response, name): vars(S3Response)[name] for name in LISTINGS},
        }
        if any(_is_ours(value) for value in originals.values()):
            raise RuntimeError("the S3 key rules are already installed")
        replacements: dict[tuple[type, str], Any] = {
            (S3Backend, "_url_module"): _routes_for_any_key(originals[(S3Backend, "_url_module")]),
            (S3Serializer, _SERIALIZE_BODY): _with_references(
                originals[(S3Serializer, _SERIALIZE_BODY)]
            ),
            (S3Response, _DELETE_KEYS): _malformed_xml_refused(
                originals[(S3Response, _DELETE_KEYS)]
            ),
            **{
                (S3Response, name): _listing_encoded(originals[(S3Response, name)], listing)
                for name, listing in LISTINGS.items()
            },
        }
        for (owner, name), replacement in replacements.items():
            setattr(owner, name, replacement)

    def uninstall() -> None:
        with _install_lock:
            for (owner, name), replacement in replacements.items():
                if vars(owner).get(name) is replacement:
                    setattr(owner, name, originals[(owner, name)])

    return uninstall


def _is_ours(value: Any) -> bool:
    target = value.fget if isinstance(value, property) else value
    return bool(getattr(target, "_imgcli_keys", False))


def _marked(replacement: Any, original: Any) -> Any:
    target: Any = replacement.fget if isinstance(replacement, property) else replacement
    target._imgcli_keys = True
    target.__wrapped__ = original  # so the check reads moto's source, installed or not
    return replacement


def _routes_for_any_key(original: property) -> property:
    def url_module(self: Any) -> Any:
        module: Any = original.__get__(self)
        paths = getattr(module, "url_paths", None)
        if isinstance(paths, dict):
            module.url_paths = {_ROUTES.get(path, path): view for path, view in paths.items()}
        return module

    return _marked(property(url_module), original)  # type: ignore[no-any-return]


def _with_references(original: Callable[..., str]) -> Callable[..., str]:
    def serialize_body(self: Any, body: Any) -> str:
        return character_references(original(self, body))

    return _marked(serialize_body, original)  # type: ignore[no-any-return]


def _malformed_xml_refused(original: Callable[..., Any]) -> Callable[..., Any]:
    from moto.s3.exceptions import MalformedXML

    def delete_keys(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except ExpatError:
            raise MalformedXML() from None

    return _marked(delete_keys, original)  # type: ignore[no-any-return]


def _listing_encoded(original: Callable[..., Any], listing: Listing) -> Callable[..., Any]:
    from moto.core.responses import ActionResult
    from moto.s3.exceptions import InvalidArgumentError

    def list_keys(self: Any) -> Any:
        # moto reads the encoding from here; without it, it lists the keys as they are.
        encoding = self.querystring.pop(_ENCODING, [None])[0]
        if encoding is None:
            return original(self)
        if encoding != "url":
            raise InvalidArgumentError(
                "Invalid Encoding Method specified in Request", _ENCODING, encoding
            )
        serialized = self.serialized

        def encoded_serialized(action_result: Any) -> Any:
            result = action_result.result
            if isinstance(result, dict):
                action_result = ActionResult(encode_listing(result, listing))
            return serialized(action_result)

        self.serialized = encoded_serialized  # this request's response object only
        try:
            return original(self)
        finally:
            del self.serialized

    return _marked(list_keys, original)  # type: ignore[no-any-return]


def check_moto_internals() -> None:
    """Fail loudly, naming what moved, if the moto internals used here are not as expected."""
    problems: list[str] = []
    try:
        from moto.core.responses import ActionResult
        from moto.core.serialize import S3Serializer
        from moto.s3 import urls
        from moto.s3.exceptions import InvalidArgumentError, MalformedXML
        from moto.s3.models import S3Backend
        from moto.s3.responses import S3Response
    except ImportError as error:
        raise MotoInternalsChanged(
            f"imgcli's S3 key rules need moto's S3 classes: {error}"
        ) from error
    if not isinstance(vars(S3Backend).get("_url_module"), property):
        problems.append("S3Backend._url_module is no longer a property")
    if KEY_ROUTE not in getattr(urls, "url_paths", {}):
        problems.append(f"moto.s3.urls.url_paths no longer holds the object route {KEY_ROUTE!r}")
    if not callable(vars(S3Serializer).get(_SERIALIZE_BODY)):
        problems.append(f"S3Serializer no longer defines {_SERIALIZE_BODY}")
    for name in (*LISTINGS, _DELETE_KEYS):
        method = vars(S3Response).get(name)
        if not callable(method):
            problems.append(f"S3Response.{name} is gone")
            continue
        source = inspect.getsource(method)
        if name == _DELETE_KEYS:
            if "xmltodict.parse(self.body" not in source:
                problems.append(f"S3Response.{name} no longer parses the body with xmltodict")
            continue
        if "self.serialized(ActionResult(result))" not in source:
            problems.append(f"S3Response.{name} no longer serializes one result dict")
        # ListObjectVersions ignores the encoding; the other two read it from here.
        reads = f'self.querystring.get("{_ENCODING}"' in source
        if reads != (name != "list_object_versions"):
            problems.append(f"S3Response.{name} changed how it reads {_ENCODING!r}")
    if not hasattr(ActionResult(None), "result"):
        problems.append("moto.core.responses.ActionResult has no result")
    if not issubclass(MalformedXML, Exception) or not issubclass(InvalidArgumentError, Exception):
        problems.append("moto.s3.exceptions' MalformedXML or InvalidArgumentError changed")
    if problems:
        raise MotoInternalsChanged(
            "imgcli's S3 key rules need moto internals that moved: " + "; ".join(problems)
        )


_install_lock = threading.Lock()
