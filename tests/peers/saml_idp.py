#!/usr/bin/env python3
"""A real SAML 2.0 identity provider for Postern's tests: pysaml2 with xmlsec1.

  saml_idp.py metadata --dir DIR --entity-id E --sso-url U [--no-signing-cert]
      prints the IdP metadata (with the signing certificate of DIR/idp.crt unless told not to)
  saml_idp.py respond --dir DIR --entity-id E --sso-url U --sp-metadata FILE --request-url URL
                      --email ADDR [--attr NAME=VALUE]... [--variant NAME]
      reads the AuthnRequest in the HTTP-Redirect URL Postern produced, and prints JSON
      {"acs_url", "SAMLResponse", "RelayState", "xml"} for the browser's POST to the ACS.
      --in-response-to ID answers that request ID instead of the one received.

DIR holds idp.key and idp.crt (PEM), made by the test with openssl. Variants, each an
attack or a mistake that Postern must refuse (the default "good" is a correct response,
assertion signed with RSA-SHA256/SHA-256):
  unsigned         nothing signed
  sha1             signed with RSA-SHA1 and SHA-1 digests
  tamper-nameid    NameID changed after signing
  comment          NameID "user@evil.com.example.com" signed, then "<!---->" inserted after
                   "evil.com" (parsers that stop at the comment read "user@evil.com")
  wrap-sibling     an unsigned evil assertion placed before the signed one
  wrap-extensions  signed assertion moved into samlp:Extensions, an evil copy with the same
                   ID in its place
  audience         signed, but for another SP's entity ID
  recipient        signed, but Destination/Recipient is another ACS URL
  expired          signed, issued two hours ago (expired an hour and a half ago)
  sign-response    the whole Response signed instead of the assertion (valid)
"""

import argparse
import base64
import json
import os
import re
import shutil
import sys
import urllib.parse

try:
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, xmldsig
    from saml2.config import IdPConfig
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
    from saml2.server import Server
    from saml2.metadata import create_metadata_string
    import saml2.assertion
    import saml2.time_util
except ImportError as e:  # the test reports this line
    sys.exit(f"pysaml2 is missing ({e}): run scripts/install-deps.sh test")

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


def xmlsec_binary():
    path = shutil.which("xmlsec1")
    if not path:
        sys.exit("xmlsec1 is missing: apt-get install xmlsec1 (scripts/install-deps.sh test)")
    return path


def config(args, sp_metadata=None):
    cfg = {
        "entityid": args.entity_id,
        "xmlsec_binary": xmlsec_binary(),
        "key_file": os.path.join(args.dir, "idp.key"),
        "cert_file": os.path.join(args.dir, "idp.crt"),
        "service": {
            "idp": {
                "endpoints": {
                    "single_sign_on_service": [
                        (args.sso_url, BINDING_HTTP_REDIRECT)
                    ],
                },
                "policy": {
                    "default": {
                        "lifetime": {"minutes": 15},
                        "attribute_restrictions": None,
                        "name_form": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
                    }
                },
                "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                "sign_assertion": True,
                "sign_response": False,
            }
        },
        "metadata": {"local": [sp_metadata]} if sp_metadata else {},
    }
    conf = IdPConfig()
    conf.load(cfg)
    return conf


def cmd_metadata(args):
    xml = create_metadata_string(None, config(args), sign=False)
    xml = xml.decode() if isinstance(xml, bytes) else xml
    if args.no_signing_cert:
        xml = re.sub(r"<(\w+:)?KeyDescriptor\b.*?</(\w+:)?KeyDescriptor>", "", xml, flags=re.S)
    print(xml)


def shift_clock(seconds):
    """Makes pysaml2 believe it is `seconds` later (negative: earlier)."""
    import datetime as _dt
    import time as _time

    class ShiftedTime:
        def __getattr__(self, name):
            return getattr(_time, name)

        def time(self):
            return _time.time() + seconds

        def gmtime(self, secs=None):
            return _time.gmtime(_time.time() + seconds if secs is None else secs)

    class ShiftedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return _dt.datetime.now(tz) + _dt.timedelta(seconds=seconds)

        @classmethod
        def utcnow(cls):
            return _dt.datetime.utcnow() + _dt.timedelta(seconds=seconds)

    saml2.time_util.time = ShiftedTime()
    saml2.time_util.datetime = ShiftedDatetime


def cmd_respond(args):
    variant = args.variant
    if variant == "expired":
        shift_clock(-2 * 3600)
    if variant == "audience":
        original = saml2.assertion.Policy.conditions
        saml2.assertion.Policy.conditions = lambda self, sp: original(self, "https://other-sp.example/metadata")
    server = Server(config=config(args, args.sp_metadata))

    query = urllib.parse.parse_qs(urllib.parse.urlsplit(args.request_url).query)
    saml_request = query["SAMLRequest"][0]
    relay_state = query.get("RelayState", [""])[0]
    req = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
    resp_args = server.response_args(req.message, [BINDING_HTTP_POST])
    if args.in_response_to:
        # Answers a request ID other than the one received (unknown-request tests).
        resp_args["in_response_to"] = args.in_response_to
    if variant == "recipient":
        resp_args["destination"] = resp_args["destination"].replace("/acs", "/other-acs")

    email = args.email
    if variant == "comment":
        email = "user@evil.com.example.com"
    identity = {"mail": [email], "displayName": ["Test User"]}
    for pair in args.attr or []:
        name, _, value = pair.partition("=")
        identity.setdefault(name, []).append(value)

    signed = variant != "unsigned"
    sign_response = variant == "sign-response"
    if variant == "sha1":
        sign_alg, digest_alg = xmldsig.SIG_RSA_SHA1, xmldsig.DIGEST_SHA1
    else:
        sign_alg, digest_alg = xmldsig.SIG_RSA_SHA256, xmldsig.DIGEST_SHA256
    response = server.create_authn_response(
        identity,
        userid=email,
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
        authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password", "authn_auth": args.entity_id},
        sign_assertion=signed and not sign_response,
        sign_response=sign_response,
        sign_alg=sign_alg,
        digest_alg=digest_alg,
        **resp_args,
    )
    xml = str(response)
    xml = tamper(xml, variant)
    print(
        json.dumps(
            {
                "acs_url": resp_args["destination"],
                "SAMLResponse": base64.b64encode(xml.encode()).decode(),
                "RelayState": relay_state,
                "xml": xml,
            }
        )
    )


def tamper(xml, variant):
    """Edits made after signing, as an attacker who holds a signed response would."""
    if variant == "tamper-nameid":
        return re.sub(r"(<(\w+:)?NameID\b[^>]*>)[^<]*", r"\1boss@example.com", xml, count=1)
    if variant == "comment":
        return xml.replace("user@evil.com.example.com<", "user@evil.com<!---->.example.com<", 1)
    if variant in ("wrap-sibling", "wrap-extensions"):
        return wrap(xml, variant)
    return xml


def wrap(xml, variant):
    # Text surgery, not a parser: re-serialising would change the signed assertion's bytes
    # (and break its digest), and an attacker keeps them exactly too.
    match = re.search(r"<(\w+:)?Assertion\b.*?</(\w+:)?Assertion>", xml, flags=re.S)
    signed_text = match.group(0)
    evil = signed_text
    evil = re.sub(r"<(\w+:)?Signature\b.*?</(\w+:)?Signature>", "", evil, count=1, flags=re.S)
    evil = re.sub(r"(<(\w+:)?NameID\b[^>]*>)[^<]*", r"\1boss@example.com", evil, count=1)
    evil = re.sub(r"(<(\w+:)?AttributeValue\b[^>]*>)[^<]*@[^<]*", r"\1boss@example.com", evil)
    if variant == "wrap-sibling":
        evil = re.sub(r'\bID="[^"]*"', 'ID="_evil"', evil, count=1)
        return xml.replace(signed_text, evil + signed_text, 1)
    # wrap-extensions: the evil copy takes the signed assertion's place (and its ID), the
    # signed one hides in Extensions where a careless ID lookup still finds it.
    prefix = re.match(r"<(\w+):Response", xml.lstrip().split("?>", 1)[-1].lstrip())
    p = prefix.group(1) + ":" if prefix else ""
    moved = f"<{p}Extensions>{signed_text}</{p}Extensions>"
    body = xml.replace(signed_text, evil, 1)
    # Extensions comes right after Issuer (and Signature) in a Response.
    issuer_end = re.search(r"</(\w+:)?Issuer>", body)
    return body[: issuer_end.end()] + moved + body[issuer_end.end():]


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("metadata")
    m.add_argument("--dir", required=True)
    m.add_argument("--entity-id", required=True)
    m.add_argument("--sso-url", required=True)
    m.add_argument("--no-signing-cert", action="store_true")
    r = sub.add_parser("respond")
    r.add_argument("--dir", required=True)
    r.add_argument("--entity-id", required=True)
    r.add_argument("--sso-url", required=True)
    r.add_argument("--sp-metadata", required=True)
    r.add_argument("--request-url", required=True)
    r.add_argument("--email", required=True)
    r.add_argument("--attr", action="append")
    r.add_argument("--variant", default="good")
    r.add_argument("--in-response-to")
    args = parser.parse_args()
    if args.command == "metadata":
        cmd_metadata(args)
    else:
        cmd_respond(args)


if __name__ == "__main__":
    main()
