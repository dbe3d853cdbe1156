"""The WS-Management wire layer: envelopes out, instances in (no network here).

Spec: DMTF DSP0226 (WS-Management 1.0) over SOAP 1.2, WS-Addressing 2004/08, WS-Transfer and WS-Enumeration
2004/09; the AMT dialect is described in ``docs/protocols.md`` ("WS-Management on AMT").

The cut, in the manner of smbprotocol (message structures under the connection): this module builds request
envelopes and parses replies into :class:`Instance` objects, and knows nothing of HTTP, authentication or
deadlines; :mod:`pytest_vpro.probes.wsman` is the client over it (requests, Digest and Kerberos, TLS, the
transcript). The lab's simulated AMT server (``pytest_vpro/lab/wsman_server.py``) parses the requests it
receives with the same :func:`element_to_instance`, so both sides read one XML dialect, and it needs none of the
client's transport to do so. Everything here stays importable as ``pytest_vpro.probes.wsman.X``.

The SOAP envelopes are hand-written: they are a handful of fixed headers, and the only Python WS-MAN library
(openwsman bindings) is a C extension that is hard to install. Replies are parsed with ``defusedxml`` (no DTDs,
no entity expansion); the client bounds their size before they get here.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from pytest_vpro.probes import errors

# --- namespaces (DSP0226 annex A; docs/protocols.md "WS-Management on AMT") -----------------
NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_WSEN = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
NS_WXF = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
ANONYMOUS = NS_WSA + "/role/anonymous"


class ENDPOINT:
    """Resource URI prefixes and WS-Transfer/Enumeration action URIs (docs/protocols.md)."""

    AMT = "http://intel.com/wbem/wscim/1/amt-schema/1/"
    CIM = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
    IPS = "http://intel.com/wbem/wscim/1/ips-schema/1/"
    GET = NS_WXF + "/Get"
    GET_RESPONSE = NS_WXF + "/GetResponse"
    PUT = NS_WXF + "/Put"
    PUT_RESPONSE = NS_WXF + "/PutResponse"
    ENUMERATE = NS_WSEN + "/Enumerate"
    ENUMERATE_RESPONSE = NS_WSEN + "/EnumerateResponse"
    PULL = NS_WSEN + "/Pull"
    PULL_RESPONSE = NS_WSEN + "/PullResponse"
    RELEASE = NS_WSEN + "/Release"
    FAULT = NS_WSA + "/fault"


AMT_PORT_HTTP = 16992
AMT_PORT_HTTPS = 16993
PATH = "/wsman"


def resource_uri(class_name: str) -> str:
    """Full resource URI for an AMT_/CIM_/IPS_ class name (docs/protocols.md, "WS-Management on AMT").

    A value that already looks like a URI is returned unchanged.
    """
    if "://" in class_name:
        return class_name
    prefix = class_name.split("_", 1)[0].upper()
    try:
        base = {"AMT": ENDPOINT.AMT, "CIM": ENDPOINT.CIM, "IPS": ENDPOINT.IPS}[prefix]
    except KeyError:
        raise ValueError(f"no known resource URI prefix for class {class_name!r}") from None
    return base + class_name


def local_name(tag: str) -> str:
    """``{ns}Name`` -> ``Name``."""
    return tag.rsplit("}", 1)[-1]



# --- errors of the wire layer (the client's own are in probes/wsman.py) ------------------
class WsmanError(errors.ProbeError):
    """Base of every error this client raises: a finding about the target, never a crash."""



class SoapFault(WsmanError):
    """A SOAP 1.2 fault (DSP0226 section 14)."""

    def __init__(self, code: str, subcode: str, reason: str, detail: str = ""):
        self.code, self.subcode, self.reason, self.detail = code, subcode, reason, detail
        super().__init__(f"SOAP fault {code}/{subcode}: {reason}" + (f" ({detail})" if detail else ""))



class MalformedReply(WsmanError, errors.MalformedReply):
    """The reply is not a usable WS-MAN envelope (not XML, wrong type, too big, no body)."""



class ReplyTooLarge(MalformedReply, errors.ReplyTooLarge):
    """The reply is larger than the client accepts (``max_bytes``)."""



# --- envelopes -----------------------------------------------------------------------
@dataclass(frozen=True)
class EndpointReference:
    """A WS-Addressing EPR to a CIM instance, used as a method parameter (e.g. ManagedElement)."""

    resource_uri: str
    selectors: Mapping[str, str] = field(default_factory=dict)
    address: str = ANONYMOUS

    def to_xml(self, tag: str) -> str:
        sel = "".join(f"<w:Selector Name={quoteattr(k)}>{escape(str(v))}</w:Selector>"
                      for k, v in self.selectors.items())
        return (
            f"<{tag}><a:Address>{escape(self.address)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{escape(self.resource_uri)}</w:ResourceURI>"
            f"<w:SelectorSet>{sel}</w:SelectorSet></a:ReferenceParameters></{tag}>"
        )


def _value_xml(tag: str, value: Any) -> str:
    if isinstance(value, EndpointReference):
        return value.to_xml(tag)
    if isinstance(value, (list, tuple)):
        return "".join(_value_xml(tag, v) for v in value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    if value is None:
        return f'<{tag} xsi:nil="true"/>'
    return f"<{tag}>{escape(str(value))}</{tag}>"


def properties_xml(element: str, uri: str, props: Mapping[str, Any]) -> str:
    """``<p:element xmlns:p=uri><p:Prop>v</p:Prop>...</p:element>`` (repeated for lists)."""
    inner = "".join(_value_xml(f"p:{k}", v) for k, v in props.items())
    return f"<p:{element} xmlns:p={quoteattr(uri)}>{inner}</p:{element}>"


def build_envelope(
    action: str,
    uri: str,
    *,
    to: str = PATH,
    message_id: str | None = None,
    selectors: Mapping[str, str] | None = None,
    body: str = "",
    timeout_s: float = 60,
) -> bytes:
    """A request envelope in the ``a:``/``w:`` prefix style of AMT's own replies (docs/protocols.md)."""
    message_id = message_id or f"uuid:{uuid.uuid4()}"
    sel = ""
    if selectors:
        sel = "<w:SelectorSet>" + "".join(
            f"<w:Selector Name={quoteattr(k)}>{escape(str(v))}</w:Selector>" for k, v in selectors.items()
        ) + "</w:SelectorSet>"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<Envelope xmlns:xsi="{NS_XSI}" xmlns:a="{NS_WSA}" xmlns:w="{NS_WSMAN}" '
        f'xmlns:n="{NS_WSEN}" xmlns="{NS_SOAP}"><Header>'
        f"<a:Action>{escape(action)}</a:Action><a:To>{escape(to)}</a:To>"
        f"<w:ResourceURI>{escape(uri)}</w:ResourceURI><a:MessageID>{escape(message_id)}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{ANONYMOUS}</a:Address></a:ReplyTo>"
        f"<w:OperationTimeout>PT{int(timeout_s)}S</w:OperationTimeout>{sel}"
        f"</Header><Body>{body}</Body></Envelope>"
    ).encode("utf-8")


class Instance(dict):
    """A CIM instance or method output as ``{property: str | list[str] | dict}``.

    ``class_name`` keeps the element's local name (e.g. ``AMT_GeneralSettings`` or
    ``RequestPowerStateChange_OUTPUT``). An EPR-valued property becomes
    ``{"ResourceURI": ..., "Selectors": {name: value}}``; other nested elements a nested dict.
    """

    def __init__(self, class_name: str, items: Iterable[tuple[str, Any]] = ()):
        super().__init__(items)
        self.class_name = class_name

    def __repr__(self) -> str:
        return f"Instance({self.class_name!r}, {dict.__repr__(self)})"


def element_to_value(elem) -> Any:
    children = list(elem)
    if not children:
        return elem.text or ""
    names = {local_name(c.tag) for c in children}
    if "ReferenceParameters" in names:
        ref = next(c for c in children if local_name(c.tag) == "ReferenceParameters")
        uri, sels = "", {}
        for c in ref.iter():
            if local_name(c.tag) == "ResourceURI":
                uri = c.text or ""
            elif local_name(c.tag) == "Selector":
                sels[c.get("Name") or c.get(f"{{{NS_WSMAN}}}Name") or ""] = (c.text or "").strip()
        return {"ResourceURI": uri, "Selectors": sels}
    return element_to_instance(elem)


def element_to_instance(elem) -> Instance:
    """Turn ``<h:Class><h:Prop>..</h:Prop>...</h:Class>`` into an :class:`Instance`."""
    out = Instance(local_name(elem.tag))
    for child in elem:
        if child.get(f"{{{NS_XSI}}}nil") == "true":
            value: Any = None
        else:
            value = element_to_value(child)
        key = local_name(child.tag)
        if key in out:
            if not isinstance(out[key], list):
                out[key] = [out[key]]
            out[key].append(value)
        else:
            out[key] = value
    return out


@dataclass
class Reply:
    """A parsed reply envelope."""

    action: str
    relates_to: str
    body: Any  # the Body element


def parse_envelope(data: bytes) -> Reply:
    """Parse a reply safely; raise :class:`SoapFault` for a fault, :class:`MalformedReply` otherwise."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MalformedReply(f"reply rejected by the safe XML parser: {type(exc).__name__}") from None
    except SafeET.ParseError as exc:
        raise MalformedReply(f"reply is not XML: {exc}") from None
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        raise MalformedReply(f"reply root is {root.tag}, not a SOAP 1.2 Envelope")
    header = root.find(f"{{{NS_SOAP}}}Header")
    body = root.find(f"{{{NS_SOAP}}}Body")
    if body is None:
        raise MalformedReply("reply has no SOAP Body")
    action = relates = ""
    if header is not None:
        action = (header.findtext(f"{{{NS_WSA}}}Action") or "").strip()
        relates = (header.findtext(f"{{{NS_WSA}}}RelatesTo") or "").strip()
    fault = body.find(f"{{{NS_SOAP}}}Fault")
    if fault is not None:
        raise _fault(fault)
    return Reply(action, relates, body)


def _fault(fault) -> SoapFault:
    code = fault.findtext(f"{{{NS_SOAP}}}Code/{{{NS_SOAP}}}Value") or ""
    sub = fault.findtext(f"{{{NS_SOAP}}}Code/{{{NS_SOAP}}}Subcode/{{{NS_SOAP}}}Value") or ""
    reason = fault.findtext(f"{{{NS_SOAP}}}Reason/{{{NS_SOAP}}}Text") or ""
    detail_el = fault.find(f"{{{NS_SOAP}}}Detail")
    detail = ""
    if detail_el is not None:
        detail = " ".join(t.strip() for t in detail_el.itertext() if t.strip())
    return SoapFault(code.strip(), sub.strip(), reason.strip(), detail)


def body_instance(reply: Reply, resource_uri: str | None = None) -> Instance:
    """The first element of the Body as an :class:`Instance`; with ``resource_uri``, only if it is in that
    resource's namespace (:func:`require_namespace`)."""
    items = list(reply.body)
    if not items:
        raise MalformedReply("reply Body is empty")
    if resource_uri is not None:
        require_namespace(items[0], resource_uri)
    return element_to_instance(items[0])


#: Schemas of one device: AMT may answer a CIM class with an instance of its AMT or IPS subclass.
_AMT_SCHEMAS = (ENDPOINT.AMT, ENDPOINT.CIM, ENDPOINT.IPS)


def _schema(uri: str) -> str:
    """The schema a resource URI (or an instance's namespace) belongs to: without its class name."""
    return uri.rsplit("/", 1)[0] + "/"


def require_namespace(elem, resource_uri: str) -> None:
    """Refuse an instance that is not in the namespace of ``resource_uri`` or of its schema (DSP0226: the
    instance's elements are in the resource's namespace; WinRM's ``.../wmi/<namespace>/*`` queries answer with
    classes of that namespace; WMI namespaces compare without case). A body in a foreign namespace is not the
    device's answer, whatever its names."""
    namespace = elem.tag[1:].split("}", 1)[0] if elem.tag.startswith("{") else ""
    want, got = _schema(resource_uri).lower(), _schema(namespace).lower()  # WMI namespaces ignore case (site_LAB)
    amt = tuple(s.lower() for s in _AMT_SCHEMAS)
    if namespace.lower() == resource_uri.lower() or got == want or (want in amt and got in amt):
        return
    raise MalformedReply(f"the reply's {local_name(elem.tag)} is in the namespace {namespace or '(none)'}, not "
                         f"in {resource_uri}'s: a body in a foreign namespace is not taken as the answer")


__all__ = [
    "NS_SOAP", "NS_WSA", "NS_WSMAN", "NS_WSEN", "NS_WXF", "NS_XSI", "ANONYMOUS", "ENDPOINT", "AMT_PORT_HTTP",
    "AMT_PORT_HTTPS", "PATH", "resource_uri", "local_name", "WsmanError", "SoapFault", "MalformedReply",
    "ReplyTooLarge",
    "EndpointReference", "properties_xml", "build_envelope", "Instance", "element_to_value", "element_to_instance",
    "Reply", "parse_envelope", "body_instance", "require_namespace",
]
