"""Environment files: what estate a run checks.

``pytest --env NAME`` loads ``environments/NAME.yaml`` (or a path). The file is
validated once, before collection; every mistake is reported as
``FILE:LINE: key.path: message`` and the run stops with pytest's usage-error
code. ``environments/example.yaml`` documents every key.

Nothing is sent before the whole file validated: the CSV inventories it names
(each mistake as ``CSV_FILE:LINE: column: message``), every address (IPv4: out
of band management is IPv4-only) and every secret reference (an unset
``env:`` variable or an unreadable ``file:`` is a usage error naming the key).

Clients come inline, from CSV files (``source: csv:PATH``) or from an LDAP
query of an OU (``source: ldap:OU=...``). An ``ldap:`` source is read only
once the file validated, through the estate's own DNS servers (``dns.servers``)
when it names them; a directory that does not answer is not a usage error but
a finding of the run (:attr:`Environment.inventory_problems`), which goes on
with the clients it has. Secrets are references only (see
:mod:`pytest_vpro.secrets`).

The data a load returns is in :mod:`pytest_vpro.environment_model`; the walk's reporting and primitive checks
in :mod:`pytest_vpro.environment_walk`; this module reads the inventory and the sections, and re-exports the
names the rest of pytest-vpro imports.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import importlib.util
import json
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from . import yamlpos
from .environment_model import (
    CLIENT_KEYS,
    DEFAULT_EXPECTED,
    DEFAULT_TIMEOUTS,
    PROVISIONING,
    ROLES,
    SECRET_KEYS,
    SERVER_EXTRA,
    Attestation,
    Client,
    Credential,
    Environment,
    EnvironmentFileError,
    LdapSearch,
    Routing,
    Server,
    Site,
    Target,
)
from .environment_walk import FQDN_RE, Walk, ipv4_problem, kind_of
from .probes.errors import Unreachable
from .secrets import SecretRef, is_reference

DN_RE = re.compile(r"^(OU|CN|DC)=(?:[^,\\]|\\.)+(?:,\s*[A-Za-z]+=(?:[^,\\]|\\.)+)*$", re.I)
CSV_BOOLEANS = ("canary", "wireless", "ieee8021x")
CSV_SEPARATORS = {";": "semicolons (;)", "\t": "tabs", "|": "vertical bars (|)"}
CSV_EXAMPLE = "fqdn,provisioning,canary"


class CsvInventory(Walk):
    """Reads the clients of a CSV inventory (``source: csv:PATH``)."""

    def csv_source(self, rel: Path, p: tuple[Any, ...], defaults: dict[str, Any]) -> list[Client]:
        """The clients of a CSV inventory: comma-separated, a header line naming the columns, one client a line.

        Every mistake is a problem ``CSV_FILE:LINE: column: message`` (the CSV file's own line).
        """
        path = rel.expanduser() if rel.expanduser().is_absolute() else self.doc.file.parent / rel
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.problem(p + ("source",), f"cannot read {path}: {exc.strerror or exc}")
            return []
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            at = data[:exc.start].count(b"\n") + 1
            self.problems.append(f"{path}:{at}: the file is not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                                 "save it as \"CSV UTF-8 (Comma delimited)\"")
            return []
        lines = [(n, line) for n, line in enumerate(re.split(r"\r\n|\r|\n", text), 1) if line.strip()]
        if not lines:
            self.problems.append(f"{path}:1: header: the file is empty; its first line must name the columns, "
                                 f"e.g. {CSV_EXAMPLE}")
            return []
        header = self.csv_header(path, *lines[0])
        if header is None:
            return []
        out: list[Client] = []
        first_line: dict[str, int] = {}
        for n, line in lines[1:]:
            row = self.csv_row(path, n, line, header)
            if row is None:
                continue
            client = self.csv_client(path, n, row, defaults)
            if client is None:
                continue
            if client.name in first_line:
                self.problems.append(f"{path}:{n}: fqdn: {client.name} is listed twice in this file "
                                     f"(first on line {first_line[client.name]})")
                continue
            first_line[client.name] = n
            self._where[id(client)] = f"{path}:{n}: fqdn"
            out.append(client)
        return out

    def csv_header(self, path: Path, n: int, line: str) -> list[str] | None:
        """The column names of the header line, or None (and its problems) if it is not usable."""
        fields, error = _split_csv_line(line)
        if error:
            self.problems.append(f"{path}:{n}: header: {error[1]}")
            return None
        names = [f.strip().lower() for f in fields]
        if len(names) == 1:
            for sep, words in CSV_SEPARATORS.items():
                if sep in line:
                    self.problems.append(
                        f"{path}:{n}: header: the columns are separated by {words}; pytest-vpro reads "
                        "comma-separated files: save the file as \"CSV (Comma delimited)\" or replace them with "
                        f"commas ({CSV_EXAMPLE})")
                    return None
        before = len(self.problems)
        if "fqdn" not in names:
            close = difflib.get_close_matches("fqdn", names, n=1)
            looks = " (it looks like a client: the header line is missing)" if FQDN_RE.match(names[0]) else \
                f" ('{close[0]}' looks like a misspelling of 'fqdn')" if close else ""
            self.problems.append(f"{path}:{n}: header: no 'fqdn' column (found: {', '.join(fields)}){looks}; "
                                 f"the first line must name the columns, e.g. {CSV_EXAMPLE}")
        for i, name in enumerate(names):
            if not name:
                self.problems.append(f"{path}:{n}: column {i + 1}: the header names no column here; "
                                     "remove the extra comma or name the column")
            elif names.index(name) < i:
                self.problems.append(f"{path}:{n}: {name}: the header names this column twice")
            elif name not in CLIENT_KEYS and "fqdn" in names:
                close = difflib.get_close_matches(name, CLIENT_KEYS, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"the columns are: {', '.join(CLIENT_KEYS)}"
                self.problems.append(f"{path}:{n}: {name}: unknown column; {hint}")
        return None if len(self.problems) > before else names

    def csv_row(self, path: Path, n: int, line: str, header: list[str]) -> dict[str, str] | None:
        """One line's values by column, or None (and its problem)."""
        def column(i: int) -> str:
            return header[i] if i < len(header) else f"column {i + 1}"

        fields, error = _split_csv_line(line)
        if error:
            self.problems.append(f"{path}:{n}: {column(error[0])}: {error[1]}")
            return None
        columns = f"the header names {len(header)} columns ({', '.join(header)})"
        if len(fields) < len(header):
            missing = header[len(fields)]
            seps = [words for sep, words in CSV_SEPARATORS.items() if sep in line]
            if seps:
                self.problems.append(f"{path}:{n}: {missing}: missing: this row's values are separated by "
                                     f"{seps[0]}, not by commas like the header's")
            else:
                self.problems.append(f"{path}:{n}: {missing}: missing: this row has {_count(len(fields), 'value')}, "
                                     f"{columns}; an empty value still needs its comma")
            return None
        if len(fields) > len(header):
            extra = [f.strip() for f in fields[len(header):]]
            what = (f"extra value {extra[0]!r}" if extra[0] else "extra value") if any(extra) else \
                "a comma too many at the end of the row"
            self.problems.append(f"{path}:{n}: column {len(header) + 1}: {what}: this row has "
                                 f"{_count(len(fields), 'value')}, {columns}; a value that contains a comma must be "
                                 "in quotes")
            return None
        return {name: value.strip() for name, value in zip(header, fields)}

    def csv_client(self, path: Path, n: int, row: dict[str, str], defaults: dict[str, Any]) -> Client | None:
        before = len(self.problems)

        def bad(column: str, message: str) -> None:
            self.problems.append(f"{path}:{n}: {column}: {message}")

        fqdn = row["fqdn"]
        if not fqdn:
            bad("fqdn", "empty; every row needs the client's fully qualified domain name")
        elif not FQDN_RE.match(fqdn):
            bad("fqdn", f"{fqdn!r} is not a fully qualified domain name (e.g. pc0001.corp.example.com)")
        values: dict[str, Any] = {k: v for k, v in row.items() if v != ""}
        for key in CSV_BOOLEANS:
            if key in values:
                flag = values[key].lower()
                if flag not in ("true", "false", "yes", "no", "1", "0"):
                    bad(key, f"expected true or false, found {values[key]!r}")
                values[key] = flag in ("true", "yes", "1")
        prov = values.get("provisioning", defaults.get("provisioning", "out_of_band"))
        if prov not in PROVISIONING:
            bad("provisioning", f"expected one of {', '.join(PROVISIONING)}, found {prov!r}")
        if "address" in values:
            problem = ipv4_problem(values["address"])
            if problem:
                bad("address", problem)
        if len(self.problems) > before:
            return None
        extra = {k: v for k, v in values.items() if k not in ("fqdn", "provisioning", "canary", "address", "uuid")}
        return Client(kind="client", name=fqdn.lower(), canary=values.get("canary", defaults.get("canary", False)),
                      provisioning=prov, address=values.get("address"), uuid=values.get("uuid"), extra=extra)



class Inventory(CsvInventory):
    """Reads the ``clients:`` list: inline clients, ``csv:`` and ``ldap:`` sources; each name once."""

    def __init__(self, doc: yamlpos.Positioned) -> None:
        super().__init__(doc)
        #: ``ldap:`` sources to read once the file validated: (path, base DN, filter, defaults).
        self.ldap_sources: list[tuple[tuple[Any, ...], str, str | None, dict[str, Any]]] = []
        #: The directory's TLS trust and deadline, from ``pki.trusted_roots`` and ``timeouts.connect``.
        self._inventory_tls: dict[str, Any] = {}

    def client_row(self, m: dict[str, Any], p: tuple[Any, ...], defaults: dict[str, Any]) -> Client | None:
        fqdn = self.string(m, "fqdn", p, pattern=FQDN_RE, what="a fully qualified domain name")
        prov = m.get("provisioning", defaults.get("provisioning", "out_of_band"))
        if prov not in PROVISIONING:
            self.problem(p + ("provisioning",), f"expected one of {', '.join(PROVISIONING)}, found {prov!r}")
        canary = m.get("canary", defaults.get("canary", False))
        if not isinstance(canary, bool):
            self.problem(p + ("canary",), f"expected true or false, found {kind_of(canary)}")
            canary = False
        address = self.address(m, "address", p)
        if not fqdn:
            return None
        extra = {k: v for k, v in m.items() if k not in ("fqdn", "provisioning", "canary", "address", "uuid")}
        # FQDNs are kept as written: a client's real name may be wrong (an underscore), and checks must see it.
        client = Client(kind="client", name=fqdn.lower(), canary=canary, provisioning=prov,
                        address=address, uuid=m.get("uuid"), extra=extra)
        self._where[id(client)] = self.at(p + ("fqdn",) if "fqdn" in m and p[-1:] != ("source",) else p)
        return client

    def clients(self, value: Any, path: tuple[Any, ...], servers: list[Server],
                credentials: dict[str, Credential]) -> list[Client]:
        if not isinstance(value, list):
            self.problem(path, f"expected a list of clients, found {kind_of(value)}")
            return []
        out: list[Client] = []
        for i, item in enumerate(value):
            p = path + (i,)
            if isinstance(item, dict) and "source" in item:
                m = self.mapping(item, p, ("source", "provisioning", "canary", "filter"))
                out.extend(self.source(m, p, servers, credentials))
                continue
            m = self.mapping(item, p, CLIENT_KEYS, required=("fqdn",))
            if m:
                client = self.client_row(m, p, {})
                if client:
                    out.append(client)
        return out

    def source(self, m: dict[str, Any], p: tuple[Any, ...], servers: list[Server],
               credentials: dict[str, Credential]) -> list[Client]:
        src = m.get("source")
        defaults: dict[str, Any] = {k: m[k] for k in ("provisioning", "canary") if k in m}
        if defaults.get("provisioning", "out_of_band") not in PROVISIONING:
            self.problem(p + ("provisioning",), f"expected one of {', '.join(PROVISIONING)}, "
                         f"found {defaults['provisioning']!r}")
            defaults.pop("provisioning")
        if not isinstance(defaults.get("canary", False), bool):
            self.problem(p + ("canary",), f"expected true or false, found {kind_of(defaults['canary'])}")
            defaults.pop("canary")
        if not isinstance(src, str) or not src.startswith(("csv:", "ldap:")):
            self.problem(p + ("source",), f"expected 'csv:PATH' or 'ldap:<OU distinguished name>', found {src!r}")
            return []
        kind, _, what = src.partition(":")
        if kind == "csv":
            if "filter" in m:
                self.problem(p + ("filter",), "a filter applies to an ldap: source only")
            return self.csv_source(Path(what), p, defaults)
        ldap_filter = m.get("filter")
        if ldap_filter is not None and (not isinstance(ldap_filter, str) or not ldap_filter.strip()):
            self.problem(p + ("filter",), f"expected an LDAP filter such as (operatingSystem=Windows*), "
                         f"found {kind_of(ldap_filter)}")
            return []
        if not DN_RE.match(what.strip()):
            self.problem(p + ("source",), f"{what!r} is not a distinguished name such as "
                         "OU=Desktops,DC=corp,DC=example,DC=com")
            return []
        dcs = [s for s in servers if "domain_controller" in s.roles]
        if not dcs:
            self.problem(p + ("source",), "an ldap: client source needs a server with role domain_controller")
            return []
        if "ldap" not in credentials:
            self.problem(p + ("source",), "an ldap: client source needs credentials.ldap (kerberos or user/password)")
            return []
        self.ldap_sources.append((p, what.strip(), ldap_filter, defaults))
        return []

    def read_directories(self, env: Environment, ldap_search: LdapSearch | None, routing: Routing) -> None:
        """Read the ``ldap:`` sources (after validation) through the estate's DNS; add their clients to ``env``.

        A directory that does not answer is a finding of the run (``env.inventory_problems``); one that answers
        and refuses (TLS not trusted, bind refused, no such OU) is a problem of the file, at the source's line.
        """
        if ldap_search is None:
            for p, _base, _filter, _defaults in self.ldap_sources:
                self.problem(p + ("source",), "this loader was given no directory reader for ldap: sources "
                                              "(a pytest-vpro run passes one: load(..., ldap_search=...))")
            return
        search = ldap_search
        dcs = env.servers_with("domain_controller")
        names = ", ".join(d.name for d in dcs)
        found: list[Client] = []
        with routing(env) as routed:
            unresolved = []  # the DCs' names the estate's DNS did not resolve, with why
            for dc in dcs if routed is not None else ():
                try:
                    routed.addresses(dc.name)
                except OSError as exc:
                    unresolved.append(f"{dc.name}: {exc.strerror or exc}")
            dns_said = f"the estate's DNS ({', '.join(env.dns['servers'])}) did not resolve " + "; ".join(unresolved)
            for p, base, ldap_filter, defaults in self.ldap_sources:
                if len(unresolved) == len(dcs) and not any(dc.address for dc in dcs):
                    env.inventory_problems.append(f"directory {names} did not answer for ldap:{base}: {dns_said}; "
                                                  "the run goes on without the clients of this source")
                    continue
                try:
                    rows = search(dcs, env.credentials["ldap"], base, ldap_filter, **self._inventory_tls)
                except (Unreachable, OSError) as exc:
                    why = _plain_error(exc) + (f" ({dns_said})" if unresolved else "")
                    env.inventory_problems.append(f"directory {names} did not answer for ldap:{base}: {why}; "
                                                  "the run goes on without the clients of this source")
                    continue
                except Exception as exc:  # noqa: BLE001 - the directory answered and refused: said at the source's line
                    self.problem(p + ("source",), f"LDAP query of {base!r} failed: {_plain_error(exc)}")
                    continue
                for row in rows:
                    client = self.client_row(row, p + ("source",), defaults)
                    if client:
                        found.append(client)
        self.unique(env.servers, env.clients + found, known=len(env.servers) + len(env.clients))
        env.clients = sorted(env.clients + found, key=lambda c: c.name)

    def unique(self, servers: list[Server], clients: list[Client], known: int = 0) -> None:
        """Each name once; the later listing is reported, with where the first one is. The first ``known``
        targets (servers, then clients) were checked already."""
        seen: dict[str, tuple[str, Target]] = {}
        for n, target in enumerate([*servers, *clients]):
            where = self._where.get(id(target), self.at((f"{target.kind}s",)))
            first = seen.get(target.name)
            if first is None:
                seen[target.name] = (where, target)
                continue
            if n < known:
                continue
            first_where, first_target = first
            place = first_where.rsplit(": ", 1)[0]
            if first_target.kind == target.kind:
                self.problems.append(f"{where}: {target.kind} {target.name} is listed twice (first at {place})")
            else:
                self.problems.append(f"{where}: {target.name} is listed both as a server (at {place}) and "
                                     "as a client")



def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _plain_error(exc: BaseException) -> str:
    """An exception as a sentence: its own text (ProbeErrors are written for reports), never a repr."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text or type(exc).__name__



def _split_csv_line(line: str) -> tuple[list[str], tuple[int, str] | None]:
    """The comma-separated values of one line (RFC 4180 quoting: ``"a, b"``, ``""`` for a quote).

    Returns (values, None), or (the values before the mistake, (index of the bad value, what is wrong)). A
    quoted value must close on its line: an inventory's values never hold a line break.
    """
    fields: list[str] = []
    i, n = 0, len(line)
    while True:
        k = len(fields)
        j = i
        while j < n and line[j] in " \t":
            j += 1
        if j < n and line[j] == '"':
            j += 1
            parts = []
            while True:
                q = line.find('"', j)
                if q < 0:
                    return fields, (k, 'a quote (") opens this value and is not closed on the same line; close '
                                       "it, or remove it")
                if line.startswith('""', q):
                    parts.append(line[j:q] + '"')
                    j = q + 2
                    continue
                parts.append(line[j:q])
                i = q + 1
                break
            rest = line[i:].split(",", 1)[0]
            if rest.strip():
                return fields, (k, f"text after the closing quote ({rest.strip()!r}): put the whole value in "
                                   "quotes, or remove the quotes")
            i += len(rest)
            value = "".join(parts)
        else:
            comma = line.find(",", i)
            value = line[i:] if comma < 0 else line[i:comma]
            if '"' in value:
                return fields, (k, 'a quote (") in the middle of a value: remove it, or put the whole value in '
                                   "quotes and double the quote inside it")
            i = n if comma < 0 else comma
        fields.append(value)
        if i >= n:
            return fields, None
        i += 1  # the comma


class Validator(Inventory):
    """The walk of one environment file: every section, every secret reference; :attr:`problems` says what is wrong."""

    def __init__(self, doc: yamlpos.Positioned) -> None:
        super().__init__(doc)
        self.secret_refs: list[tuple[tuple[Any, ...], SecretRef]] = []

    def environment(self, *, inventory_cache: Path | None) -> Environment | None:
        top = self.mapping(self.doc.data, (), (
            "name", "site", "dns", "credentials", "servers", "clients", "pki", "console", "expected", "timeouts",
            "attestations", "attestation_max_age_days", "log_patterns", "lab"), required=("site",))
        site = self.site(top["site"], ("site",)) if "site" in top else None
        credentials = self.credentials(top.get("credentials", {}), ("credentials",))
        servers = self.servers(top.get("servers", []), ("servers",))
        pki = self.pki(top.get("pki", {}), ("pki",))
        timeouts = self.timeouts(top.get("timeouts", {}), ("timeouts",))
        self._inventory_tls = {"ca_file": pki.get("trusted_roots"), "timeout": timeouts["connect"]}
        if inventory_cache and inventory_cache.is_file():
            clients = [Client(kind="client", name=r["fqdn"], canary=r["canary"], provisioning=r["provisioning"],
                              address=r["address"], uuid=r["uuid"], extra=r["extra"])
                       for r in json.loads(inventory_cache.read_text())]
        else:
            clients = self.clients(top.get("clients", []), ("clients",), servers, credentials)
        self.unique(servers, clients)
        dns = self.dns(top.get("dns", {}), ("dns",))
        console = self.mapping(top.get("console", {}), ("console",), ("user", "groups_limit"))
        expected = self.expected(top.get("expected", {}), ("expected",))
        attestations = self.attestations(top.get("attestations", []), ("attestations",))
        max_age = top.get("attestation_max_age_days", 90)
        if self.number(max_age, ("attestation_max_age_days",), minimum=1) is None:
            max_age = 90
        log_patterns = top.get("log_patterns", {})
        if not isinstance(log_patterns, dict):
            self.problem(("log_patterns",),
                         f"expected a mapping of event -> list of patterns, found {kind_of(log_patterns)}")
            log_patterns = {}
        lab = top.get("lab")
        if lab is not None and not isinstance(lab, dict):
            self.problem(("lab",), f"expected a mapping, found {kind_of(lab)}")
            lab = None
        if site is None:
            return None
        return Environment(
            name=str(top.get("name") or self.doc.file.stem), file=self.doc.file, site=site, servers=servers,
            clients=sorted(clients, key=lambda c: c.name), credentials=credentials, dns=dns, pki=pki,
            console=console, expected=expected, timeouts=timeouts, attestations=attestations,
            attestation_max_age_days=int(max_age), log_patterns=log_patterns, lab=lab, raw=top)

    def site(self, value: Any, path: tuple[Any, ...]) -> Site | None:
        m = self.mapping(value, path, ("name", "code", "domain", "realm", "forest", "amt_container",
                                       "client_domains"), required=("name", "code", "domain", "amt_container"))
        if not m:
            return None
        domain = self.string(m, "domain", path, pattern=FQDN_RE, what="a DNS domain (e.g. corp.example.com)")
        code = self.string(m, "code", path, pattern=re.compile(r"^[A-Za-z0-9]{3}$"),
                           what="a three-character site code (e.g. ABC)")
        container = self.string(m, "amt_container", path, pattern=re.compile(r"^(OU|CN)=.+,DC=.+", re.I),
                                what="a distinguished name such as OU=AMT,DC=corp,DC=example,DC=com")
        domain = domain or "invalid.invalid"
        return Site(kind="site", name=domain, code=code or "", site_name=self.string(m, "name", path) or "",
                    realm=self.string(m, "realm", path, default=domain.upper()) or domain.upper(),
                    forest=self.string(m, "forest", path, default=domain) or domain,
                    amt_container=container or "",
                    client_domains=tuple(self.str_list(m, "client_domains", path) or [domain]))

    def credential(self, value: Any, path: tuple[Any, ...]) -> Credential | None:
        if value == "kerberos":
            return Credential(None, None)
        winrm = path[-1:] == ("winrm",)
        m = self.mapping(value, path, ("user", "password", *(("basic_hosts",) if winrm else ())),
                         required=("user", "password"))
        if not m:
            return None
        self.secret_field(m, "password", path)
        user = self.string(m, "user", path)
        basic_hosts = self.basic_hosts(m, path) if winrm else ()
        pw = m.get("password")
        if not is_reference(pw):
            return None
        ref = SecretRef(pw, self.doc.file.parent)
        self.secret_refs.append((path + ("password",), ref))
        return Credential(user, ref, basic_hosts)

    def basic_hosts(self, m: dict[str, Any], path: tuple[Any, ...]) -> tuple[str, ...]:
        """``credentials.winrm.basic_hosts``: a list of FQDNs (no wildcards: Basic is allowed host by host)."""
        value = m.get("basic_hosts", [])
        if not isinstance(value, list):
            self.problem(path + ("basic_hosts",), f"expected a list of host FQDNs whose WinRM accepts HTTP Basic "
                         f"over https, found {kind_of(value)}")
            return ()
        out = []
        for i, host in enumerate(value):
            if not isinstance(host, str) or not FQDN_RE.match(host) or any(c in host for c in "*/:@"):
                self.problem(path + ("basic_hosts", i), f"expected the fully qualified domain name of a host "
                             f"(no wildcard, no URL), found {host!r}")
                continue
            out.append(host.lower().rstrip("."))
        return tuple(out)

    def secret_field(self, m: dict[str, Any], key: str, path: tuple[Any, ...]) -> None:
        value = m.get(key)
        if value is None or is_reference(value):
            return
        var = "VPRO_" + "_".join(str(p).upper() for p in path if isinstance(p, str)) + "_" + key.upper()
        self.problem(path + (key,), "a plaintext secret is not allowed in an environment file (the value is not "
                     f"shown); reference it instead: {key}: \"env:{var}\" and export {var}, or "
                     f"{key}: \"file:/path/to/secret\", or use kerberos")

    def check_secrets(self) -> None:
        """Every secret reference resolves now (its value is read, and dropped: see SecretRef.problem)."""
        for path, ref in self.secret_refs:
            problem = ref.problem()
            if problem is None:
                continue
            kind, _, what = ref.ref.partition(":")
            hint = f"; export {what} before the run" if kind == "env" and "not set" in problem else ""
            self.problem(path, f"{problem}{hint}")

    def credentials(self, value: Any, path: tuple[Any, ...]) -> dict[str, Credential]:
        m = self.mapping(value, path, ("ldap", "winrm", "amt", "smb", "console", "mebx"))
        out = {}
        for key, item in m.items():
            cred = self.credential(item, path + (key,))
            if cred is not None:
                out[key] = cred
        return out

    def servers(self, value: Any, path: tuple[Any, ...]) -> list[Server]:
        if not isinstance(value, list):
            self.problem(path, f"expected a list of servers, found {kind_of(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            p = path + (i,)
            m = self.mapping(item, p, ("fqdn", "roles", "address", "winrm", "testinfra", "canary",
                                       *SERVER_EXTRA), required=("fqdn", "roles"))
            if not m:
                continue
            fqdn = self.string(m, "fqdn", p, pattern=FQDN_RE, what="a fully qualified domain name")
            roles = self.str_list(m, "roles", p)
            for j, role in enumerate(roles):
                if role not in ROLES:
                    close = difflib.get_close_matches(role, ROLES, n=1)
                    hint = f"did you mean '{close[0]}'?" if close else f"roles are: {', '.join(ROLES)}"
                    self.problem(p + ("roles", j), f"unknown role '{role}'; {hint}")
            for key in ("winrm", "testinfra", *SERVER_EXTRA):
                if key == "dhcp_port":
                    if key in m:
                        self.number(m[key], p + (key,), minimum=1)
                elif key == "probe_from":
                    self.address(m, key, p)
                else:
                    self.string(m, key, p)
            address = self.address(m, "address", p)
            if fqdn:
                extra = {k: m[k] for k in SERVER_EXTRA if k in m}
                server = Server(kind="server", name=fqdn.lower(), roles=tuple(roles), address=address,
                                winrm=m.get("winrm"), testinfra=m.get("testinfra"),
                                canary=self.boolean(m, "canary", p), extra=extra)
                self._where[id(server)] = self.at(p + ("fqdn",))
                out.append(server)
        return sorted(out, key=lambda s: s.name)

    def dns(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        m = self.mapping(value, path, ("servers", "port", "route_connections"))
        servers = self.str_list(m, "servers", path)
        for i, server in enumerate(servers):
            problem = ipv4_problem(server)
            if problem:
                self.problem(path + ("servers", i), problem)
        port = m.get("port", 53)
        self.number(port, path + ("port",), minimum=1)
        return {"servers": servers, "port": int(port) if isinstance(port, int) else 53,
                "route_connections": self.boolean(m, "route_connections", path)}

    def pki(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        m = self.mapping(value, path, ("provisioning_chain", "trusted_roots", "web_server_template", "issuing_ca",
                                       "multi_tier"))
        out = dict(m)
        out.setdefault("web_server_template", "IntelAMTWebServer")
        for key in ("provisioning_chain", "trusted_roots"):
            if key in m:
                rel = self.string(m, key, path)
                if rel:
                    p = Path(rel).expanduser()
                    p = p if p.is_absolute() else self.doc.file.parent / p
                    if not p.is_file():
                        self.problem(path + (key,), f"file not found: {p}")
                    out[key] = str(p)
        return out

    def expected(self, value: Any, path: tuple[Any, ...]) -> dict[str, Any]:
        m = self.mapping(value, path, tuple(DEFAULT_EXPECTED))
        out = json.loads(json.dumps(DEFAULT_EXPECTED))
        for key, v in m.items():
            if key not in DEFAULT_EXPECTED:  # already reported as an unknown key
                continue
            default = DEFAULT_EXPECTED[key]
            if isinstance(default, dict):
                sub = self.mapping(v, path + (key,), tuple(default))
                for k, port in sub.items():
                    if self.number(port, path + (key, k), minimum=1) is not None:
                        out[key][k] = port
            elif isinstance(default, list):
                out[key] = self.str_list(m, key, path) or default
            elif isinstance(default, str):
                out[key] = self.string(m, key, path, default=default)
            elif self.number(v, path + (key,), minimum=0) is not None:
                out[key] = v
        return out

    def timeouts(self, value: Any, path: tuple[Any, ...]) -> dict[str, float]:
        m = self.mapping(value, path, tuple(DEFAULT_TIMEOUTS))
        out = dict(DEFAULT_TIMEOUTS)
        for key, v in m.items():
            n = self.number(v, path + (key,), minimum=0.05)
            if n is not None:
                out[key] = float(n)
        return out

    def attestations(self, value: Any, path: tuple[Any, ...]) -> list[Attestation]:
        if not isinstance(value, list):
            self.problem(path, f"expected a list of attestations, found {kind_of(value)}")
            return []
        out = []
        for i, item in enumerate(value):
            p = path + (i,)
            m = self.mapping(item, p, ("check", "target", "by", "at", "seen"), required=("check", "by", "at", "seen"))
            if not m:
                continue
            at = m.get("at")
            if isinstance(at, dt.datetime):
                at = at.date()
            if not isinstance(at, dt.date):
                self.problem(p + ("at",), f"expected a date such as 2026-11-20, found {kind_of(at)}")
                continue
            check, by, seen = (self.string(m, k, p) for k in ("check", "by", "seen"))
            target = self.string(m, "target", p, default="*")
            if check and by and seen:
                out.append(Attestation(check=check, target=(target or "*").lower(), by=by, at=at, seen=seen))
        return out


__all__ = [
    "CLIENT_KEYS", "CSV_BOOLEANS", "CSV_EXAMPLE", "CSV_SEPARATORS", "DEFAULT_EXPECTED", "DEFAULT_TIMEOUTS", "DN_RE",
    "FQDN_RE", "PROVISIONING", "ROLES", "SECRET_KEYS", "SERVER_EXTRA", "SHIPPED_ENVIRONMENTS", "Attestation",
    "Client", "Credential", "Environment", "EnvironmentFileError", "LdapSearch", "Routing", "Server", "Site",
    "Target", "available_environments", "ipv4_problem", "is_path", "load", "resolve_env_path",
    "write_inventory_cache",
]


def _shipped_environments() -> Path:
    spec = importlib.util.find_spec("pytest_vpro.environments")  # a clone's environments/ under an editable install
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else Path()


SHIPPED_ENVIRONMENTS = _shipped_environments()


def is_path(name: str) -> bool:
    """``--env`` takes a name (``lab``) or a path (``envs/prod.yaml``)."""
    return Path(name).suffix in (".yaml", ".yml") or "/" in name


def resolve_env_path(name: str, rootdir: Path, cwd: Path | None = None) -> Path:
    """``--env NAME``: the first of ``<rootdir>/environments/NAME.yaml``, ``./environments/NAME.yaml`` and the
    environments that ship in the package (``lab``, ``example``); a path is taken as it is (from the current
    folder). A name found nowhere gives the rootdir's path, whose error lists what is available."""
    cwd = cwd or Path.cwd()
    candidate = Path(name).expanduser()
    if is_path(name):
        return candidate if candidate.is_absolute() else (cwd / candidate)
    folders = dict.fromkeys([rootdir / "environments", cwd / "environments", SHIPPED_ENVIRONMENTS])
    for folder in folders:
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    return rootdir / "environments" / f"{name}.yaml"


def available_environments(rootdir: Path, cwd: Path | None = None) -> list[str]:
    """The names ``--env`` finds (see :func:`resolve_env_path`)."""
    folders = [rootdir / "environments", (cwd or Path.cwd()) / "environments", SHIPPED_ENVIRONMENTS]
    return sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})


def load(path: Path, *, ldap_search: LdapSearch | None = None, routing: Routing | None = None,
         inventory_cache: Path | None = None, check_secrets: bool | None = None) -> Environment:
    """Load and validate an environment file; raise :class:`EnvironmentFileError`.

    In this order, and nothing is sent before the third: the file and its CSV inventories are validated;
    every secret reference is asked (``check_secrets``); then the ``ldap:`` sources are read with
    ``ldap_search``, within ``routing`` (the estate's DNS; none: this machine's resolver). A file with ``ldap:``
    sources and no ``ldap_search`` is refused at those sources' lines. A directory that does not answer is
    recorded in :attr:`Environment.inventory_problems`.

    ``inventory_cache``: a JSON file with the clients already resolved (xdist
    workers read the controller's so that every worker sees the same fleet).
    ``check_secrets``: default True, except with an ``inventory_cache`` (a worker, a merge of reports: the
    controller asked them already, or nothing will be sent); False for runs that send nothing (``--facts-in``).
    """
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" (available: {', '.join(available)})" if available else ""
        raise EnvironmentFileError([f"{path}: environment file not found{hint}"])
    try:
        doc = yamlpos.load(path)
    except yamlpos.YamlError as exc:
        raise EnvironmentFileError([str(exc)]) from None
    except RecursionError:  # found by tests/reliability/test_fuzz.py: "a: &x [*x]" or 1,000 nested "["
        raise EnvironmentFileError([f"{path}: the YAML is nested too deeply or refers to itself "
                                    "(a recursive &anchor/*alias)"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # e.g. a control character or a binary file (fuzzing)
        raise EnvironmentFileError([f"{path}: not a readable YAML text file: {str(exc).splitlines()[0]}"]) from None
    v = Validator(doc)
    env = v.environment(inventory_cache=inventory_cache)
    if check_secrets is None:
        check_secrets = inventory_cache is None
    if check_secrets:
        v.check_secrets()
    if v.problems:
        raise EnvironmentFileError(v.problems)
    assert env is not None
    if v.ldap_sources:  # only now: the file validated, every secret is there
        v.read_directories(env, ldap_search, routing or _no_routing)
        if v.problems:
            raise EnvironmentFileError(v.problems)
    return env


@contextlib.contextmanager
def _no_routing(env: Environment) -> Iterator[None]:
    yield None


def write_inventory_cache(env: Environment, path: Path) -> None:
    rows = [{"fqdn": c.name, "provisioning": c.provisioning, "canary": c.canary, "address": c.address,
             "uuid": c.uuid, "extra": c.extra} for c in env.clients]
    path.write_text(json.dumps(rows))
