"""The clients of an environment file: listed inline, read from CSV inventories, or found in the directory.

A fleet is rarely typed into the YAML: ``clients:`` lists some inline and names sources, ``csv:PATH`` (a
spreadsheet saved as CSV) or ``ldap:OU=...`` (the computers of an OU). Reading them is a job of its own, with its
own mistakes, so it has its own module, built on the file's walk (:class:`~pytest_vpro.environment_walk.Walk`):

- :class:`CsvInventory` reads one CSV file; every mistake is said at the CSV file's own line, as
  ``CSV_FILE:LINE: column: message``, in words a spreadsheet user acts on (the separator, a quote, a missing
  comma).
- :class:`Inventory` reads the ``clients:`` list, checks each source, reads the ``ldap:`` sources once the whole
  file validated (:func:`pytest_vpro.environment.load` calls :meth:`Inventory.read_directories`), and names each
  target once across servers and clients.

The directory is asked through the ``ldap_search`` a run passes (:data:`~pytest_vpro.environment_model.LdapSearch`):
this module imports no protocol, only the error a probe raises for a host that does not answer.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from . import yamlpos
from .environment_model import (
    CLIENT_KEYS,
    PROVISIONING,
    Client,
    Credential,
    Environment,
    LdapSearch,
    Routing,
    Server,
    Target,
)
from .environment_walk import FQDN_RE, Walk, ipv4_problem, kind_of
from .probes.errors import Unreachable

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
