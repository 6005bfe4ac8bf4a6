"""A small Bicep reader for the structural tests: enough of the language to read our own templates, no more.

No Bicep compiler runs on these machines, so the tests read the source. This parses the declarations (param, var,
resource, module, output, targetScope, decorators) and the expression language they use (strings with
interpolation, objects, arrays, for-expressions, calls, member access, ternaries, binary operators) into plain
nodes, keeping each node's source text. Anything else (user-defined types, imports, nested resource declarations)
raises `BicepSyntaxError` naming the line, so a template the reader cannot follow fails loudly instead of being
half-read. It does not type-check or evaluate: the tests resolve what they need (`Scope`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator


class BicepSyntaxError(ValueError):
    pass


# Nodes ------------------------------------------------------------------------------------------------------------


@dataclass
class Node:
    source: str = field(default="", repr=False, compare=False)


@dataclass
class Str(Node):
    parts: list[str | Node] = field(default_factory=list)  # literal text and interpolated expressions

    @property
    def literal(self) -> str | None:
        """The string's value if it has no interpolation, else None."""
        return "".join(self.parts) if all(isinstance(p, str) for p in self.parts) else None  # type: ignore[arg-type]


@dataclass
class Num(Node):
    value: int = 0


@dataclass
class Lit(Node):
    value: bool | None = None  # true, false, null


@dataclass
class Ref(Node):
    name: str = ""


@dataclass
class Member(Node):
    target: Node | None = None
    name: str = ""
    safe: bool = False  # .? access


@dataclass
class Index(Node):
    target: Node | None = None
    index: Node | None = None


@dataclass
class Call(Node):
    callee: Node | None = None  # Ref (a function) or Member (a resource function such as x.listKeys)
    args: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.callee.name if isinstance(self.callee, (Ref, Member)) else ""


@dataclass
class Obj(Node):
    items: dict[str, Node] = field(default_factory=dict)

    def get(self, *path: str) -> Node | None:
        node: Node | None = self
        for key in path:
            if not isinstance(node, Obj) or key not in node.items:
                return None
            node = node.items[key]
        return node


@dataclass
class Arr(Node):
    items: list[Node] = field(default_factory=list)


@dataclass
class For(Node):
    names: list[str] = field(default_factory=list)  # item (and index) variable names
    iterable: Node | None = None
    body: Node | None = None
    condition: Node | None = None


@dataclass
class Ternary(Node):
    test: Node | None = None
    then: Node | None = None
    otherwise: Node | None = None


@dataclass
class BinOp(Node):
    op: str = ""
    left: Node | None = None
    right: Node | None = None


@dataclass
class Unary(Node):
    op: str = ""
    operand: Node | None = None


@dataclass
class Lambda(Node):
    params: list[str] = field(default_factory=list)
    body: Node | None = None


@dataclass
class Decorator:
    name: str
    args: list[Node]


@dataclass
class Param:
    name: str
    type: str
    default: Node | None
    decorators: list[Decorator]

    def decorator(self, name: str) -> Decorator | None:
        return next((d for d in self.decorators if d.name == name), None)


@dataclass
class Resource:
    symbol: str
    type: str  # e.g. Microsoft.Web/sites
    api_version: str
    existing: bool
    condition: Node | None  # `= if (cond) {...}`
    body: Node  # Obj, or For over Obj
    line: int
    source: str  # the whole declaration, comments included

    @property
    def obj(self) -> Obj:
        body = self.body.body if isinstance(self.body, For) else self.body
        assert isinstance(body, Obj), f"{self.symbol}: body is not an object"
        return body


@dataclass
class Module:
    symbol: str
    path: str
    condition: Node | None
    body: Obj
    line: int

    @property
    def params(self) -> Obj:
        params = self.body.get("params")
        return params if isinstance(params, Obj) else Obj()


@dataclass
class Output:
    name: str
    type: str
    value: Node


@dataclass
class Template:
    path: Path
    text: str
    target_scope: str = "resourceGroup"
    params: dict[str, Param] = field(default_factory=dict)
    vars: dict[str, Node] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    modules: list[Module] = field(default_factory=list)
    outputs: dict[str, Output] = field(default_factory=dict)

    def resource(self, symbol: str) -> Resource:
        return next(r for r in self.resources if r.symbol == symbol)

    def resources_of(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type.lower() == type_.lower()]

    def module(self, symbol: str) -> Module:
        return next(m for m in self.modules if m.symbol == symbol)


# Lexer ------------------------------------------------------------------------------------------------------------


@dataclass
class Token:
    kind: str  # str, num, ident, op, nl, eof
    value: Any
    start: int
    end: int


_OPS = ["=>", "??", ".?", "==", "!=", "<=", ">=", "&&", "||", "::", *"{}[]():,.?!=<>+-*/%@"]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"\d+")


def _lex(text: str, offset: int = 0) -> list[Token]:
    tokens: list[Token] = []
    stack: list[str] = []  # open brackets: newlines count inside { and [ and at top level, not inside (
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            if not stack or stack[-1] != "(":
                tokens.append(Token("nl", None, offset + i, offset + i + 1))
            i += 1
        elif c in " \t\r":
            i += 1
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else n
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise BicepSyntaxError(f"unclosed /* comment at offset {offset + i}")
            i = end + 2
        elif text.startswith("'''", i):
            end = text.find("'''", i + 3)
            if end < 0:
                raise BicepSyntaxError(f"unclosed ''' string at offset {offset + i}")
            tokens.append(Token("str", [text[i + 3:end].lstrip("\n")], offset + i, offset + end + 3))
            i = end + 3
        elif c == "'":
            parts, i_end = _lex_string(text, i, offset)
            tokens.append(Token("str", parts, offset + i, offset + i_end))
            i = i_end
        elif m := _NUMBER.match(text, i):
            tokens.append(Token("num", int(m.group()), offset + i, offset + m.end()))
            i = m.end()
        elif m := _IDENT.match(text, i):
            tokens.append(Token("ident", m.group(), offset + i, offset + m.end()))
            i = m.end()
        else:
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is None:
                raise BicepSyntaxError(f"unexpected character {c!r} at offset {offset + i}")
            if op in "{[(":
                stack.append(op)
            elif op in "}])":
                if not stack:
                    raise BicepSyntaxError(f"unbalanced {op!r} at offset {offset + i}")
                stack.pop()
            tokens.append(Token("op", op, offset + i, offset + i + len(op)))
            i += len(op)
    tokens.append(Token("eof", None, offset + n, offset + n))
    return tokens


_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


def _lex_string(text: str, start: int, offset: int) -> tuple[list[Any], int]:
    """A single-quoted string from `start`; interpolations become (inner source, its offset) pairs."""
    parts: list[Any] = []
    buf: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            buf.append(_ESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        elif c == "'":
            if buf:
                parts.append("".join(buf))
            return parts, i + 1
        elif text.startswith("${", i):
            if buf:
                parts.append("".join(buf))
                buf = []
            end = _matching_brace(text, i + 1)
            parts.append((text[i + 2:end], offset + i + 2))
            i = end + 1
        elif c == "\n":
            break
        else:
            buf.append(c)
            i += 1
    raise BicepSyntaxError(f"unclosed string at offset {offset + start}")


def _matching_brace(text: str, open_at: int) -> int:
    depth, i = 0, open_at
    while i < len(text):
        c = text[i]
        if c == "'":
            _, i = _lex_string(text, i, 0)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise BicepSyntaxError(f"unclosed interpolation at offset {open_at}")


# Parser -----------------------------------------------------------------------------------------------------------

_BINARY = {"??": 1, "||": 2, "&&": 3, "==": 4, "!=": 4, "<": 5, "<=": 5, ">": 5, ">=": 5, "+": 6, "-": 6, "*": 7,
           "/": 7, "%": 7}


class _Parser:
    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.pos = 0

    # Token helpers

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def at(self, kind: str, value: Any = None) -> bool:
        return self.tok.kind == kind and (value is None or self.tok.value == value)

    def take(self, kind: str, value: Any = None) -> Token:
        if not self.at(kind, value):
            want = value if value is not None else kind
            raise self.error(f"expected {want!r}, found {self.tok.value if self.tok.value is not None else self.tok.kind!r}")
        token = self.tok
        self.pos += 1
        return token

    def skip_nl(self) -> None:
        while self.at("nl"):
            self.pos += 1

    def error(self, message: str) -> BicepSyntaxError:
        line = self.text.count("\n", 0, self.tok.start) + 1
        return BicepSyntaxError(f"line {line}: {message}")

    def finish(self, node: Node, start: int) -> Node:
        node.source = self.text[start:self.tokens[self.pos - 1].end]
        return node

    # Expressions

    def expr(self) -> Node:
        start = self.tok.start
        if self.at("ident") and self.peek().kind == "op" and self.peek().value == "=>":
            name = self.take("ident").value
            self.take("op", "=>")
            return self.finish(Lambda(params=[name], body=self.expr()), start)
        test = self.binary(0)
        if self.at("op", "?"):
            self.pos += 1
            self.skip_nl()
            then = self.expr()
            self.skip_nl()
            self.take("op", ":")
            self.skip_nl()
            otherwise = self.expr()
            return self.finish(Ternary(test=test, then=then, otherwise=otherwise), start)
        return test

    def binary(self, min_prec: int) -> Node:
        start = self.tok.start
        left = self.unary()
        while self.at("op") and self.tok.value in _BINARY and _BINARY[self.tok.value] > min_prec:
            op = self.take("op").value
            right = self.binary(_BINARY[op])
            left = self.finish(BinOp(op=op, left=left, right=right), start)
        return left

    def unary(self) -> Node:
        start = self.tok.start
        if self.at("op", "!") or self.at("op", "-"):
            op = self.take("op").value
            return self.finish(Unary(op=op, operand=self.unary()), start)
        return self.postfix(self.primary(), start)

    def postfix(self, node: Node, start: int) -> Node:
        while True:
            if self.at("op", ".") or self.at("op", ".?"):
                safe = self.take("op").value == ".?"
                name = self.take("ident").value
                node = self.finish(Member(target=node, name=name, safe=safe), start)
            elif self.at("op", "["):
                self.pos += 1
                index = self.expr()
                self.take("op", "]")
                node = self.finish(Index(target=node, index=index), start)
            elif self.at("op", "(") and isinstance(node, (Ref, Member)):
                self.pos += 1
                args: list[Node] = []
                while not self.at("op", ")"):
                    args.append(self.expr())
                    if not self.at("op", ")"):
                        self.take("op", ",")
                self.take("op", ")")
                node = self.finish(Call(callee=node, args=args), start)
            elif self.at("op", "!"):  # non-null assertion
                self.pos += 1
            else:
                return node

    def primary(self) -> Node:
        start = self.tok.start
        tok = self.tok
        if tok.kind == "str":
            self.pos += 1
            parts: list[str | Node] = [p if isinstance(p, str) else _parse_expr(p[0], p[1], self.text) for p in tok.value]
            return self.finish(Str(parts=parts), start)
        if tok.kind == "num":
            self.pos += 1
            return self.finish(Num(value=tok.value), start)
        if tok.kind == "ident":
            self.pos += 1
            if tok.value in ("true", "false", "null"):
                return self.finish(Lit(value={"true": True, "false": False, "null": None}[tok.value]), start)
            return self.finish(Ref(name=tok.value), start)
        if self.at("op", "("):
            self.pos += 1
            inner = self.expr()
            self.take("op", ")")
            return inner
        if self.at("op", "{"):
            return self.obj()
        if self.at("op", "["):
            return self.array()
        raise self.error(f"unexpected {tok.value if tok.value is not None else tok.kind!r}")

    def obj(self) -> Obj:
        start = self.take("op", "{").start
        items: dict[str, Node] = {}
        self.skip_nl()
        while not self.at("op", "}"):
            if self.at("ident", "resource") and self.peek().kind == "ident":
                raise self.error("nested resource declarations are not supported: declare it with `parent:`")
            key_tok = self.tok
            if key_tok.kind == "ident":
                key = key_tok.value
            elif key_tok.kind == "str" and all(isinstance(p, str) for p in key_tok.value):
                key = "".join(key_tok.value)
            elif key_tok.kind == "str":
                key = self.text[key_tok.start:key_tok.end]  # an interpolated key: kept as its source text
            else:
                raise self.error("expected an object key")
            self.pos += 1
            self.take("op", ":")
            if key in items:
                raise self.error(f"duplicate key {key!r}")
            items[key] = self.expr()
            if self.at("op", ","):
                self.pos += 1
            elif not self.at("op", "}"):
                self.take("nl")
            self.skip_nl()
        self.take("op", "}")
        return self.finish(Obj(items=items), start)  # type: ignore[return-value]

    def array(self) -> Node:
        start = self.take("op", "[").start
        self.skip_nl()
        if self.at("ident", "for"):
            self.pos += 1
            names: list[str] = []
            if self.at("op", "("):
                self.pos += 1
                names.append(self.take("ident").value)
                self.take("op", ",")
                names.append(self.take("ident").value)
                self.take("op", ")")
            else:
                names.append(self.take("ident").value)
            self.take("ident", "in")
            iterable = self.expr()
            self.take("op", ":")
            condition = None
            if self.at("ident", "if"):
                self.pos += 1
                self.take("op", "(")
                condition = self.expr()
                self.take("op", ")")
            body = self.expr()
            self.skip_nl()
            self.take("op", "]")
            return self.finish(For(names=names, iterable=iterable, body=body, condition=condition), start)
        items: list[Node] = []
        while not self.at("op", "]"):
            items.append(self.expr())
            if self.at("op", ","):
                self.pos += 1
            elif not self.at("op", "]"):
                self.take("nl")
            self.skip_nl()
        self.take("op", "]")
        return self.finish(Arr(items=items), start)

    # Declarations

    def template(self, path: Path) -> Template:
        template = Template(path=path, text=self.text)
        decorators: list[Decorator] = []
        self.skip_nl()
        while not self.at("eof"):
            start = self.tok.start
            if self.at("op", "@"):
                self.pos += 1
                callee = self.postfix(self.primary(), self.tok.start)
                if not isinstance(callee, Call):
                    raise self.error("a decorator must be a call, e.g. @description('...')")
                decorators.append(Decorator(callee.name, callee.args))
            elif self.at("ident", "targetScope"):
                self.pos += 1
                self.take("op", "=")
                scope = self.expr()
                template.target_scope = scope.literal if isinstance(scope, Str) and scope.literal else scope.source
            elif self.at("ident", "param"):
                self.pos += 1
                name = self.take("ident").value
                type_ = self.type_name()
                default = None
                if self.at("op", "="):
                    self.pos += 1
                    default = self.expr()
                template.params[name] = Param(name, type_, default, decorators)
                decorators = []
            elif self.at("ident", "var"):
                self.pos += 1
                name = self.take("ident").value
                self.take("op", "=")
                template.vars[name] = self.expr()
                decorators = []
            elif self.at("ident", "output"):
                self.pos += 1
                name = self.take("ident").value
                type_ = self.type_name()
                self.take("op", "=")
                template.outputs[name] = Output(name, type_, self.expr())
                decorators = []
            elif self.at("ident", "resource"):
                template.resources.append(self.resource(start))
                decorators = []
            elif self.at("ident", "module"):
                template.modules.append(self.module(start))
                decorators = []
            else:
                raise self.error(f"unsupported declaration {self.tok.value!r}")
            if not self.at("eof"):
                self.take("nl")
            self.skip_nl()
        return template

    def type_name(self) -> str:
        name = self.take("ident").value
        if self.at("op", "[") and self.peek().kind == "op" and self.peek().value == "]":
            self.pos += 2
            name += "[]"
        return name

    def declaration_body(self) -> tuple[Node | None, Node]:
        self.take("op", "=")
        condition = None
        if self.at("ident", "if"):
            self.pos += 1
            self.take("op", "(")
            condition = self.expr()
            self.take("op", ")")
        return condition, self.expr()

    def resource(self, start: int) -> Resource:
        line = self.text.count("\n", 0, start) + 1
        self.take("ident", "resource")
        symbol = self.take("ident").value
        type_tok = self.take("str")
        if len(type_tok.value) != 1 or not isinstance(type_tok.value[0], str) or "@" not in type_tok.value[0]:
            raise self.error(f"resource {symbol}: the type must be a literal 'Namespace/type@apiVersion'")
        type_, api_version = type_tok.value[0].split("@", 1)
        existing = False
        if self.at("ident", "existing"):
            self.pos += 1
            existing = True
        condition, body = self.declaration_body()
        source = _with_leading_comments(self.text, start, self.tokens[self.pos - 1].end)
        return Resource(symbol, type_, api_version, existing, condition, body, line, source)

    def module(self, start: int) -> Module:
        line = self.text.count("\n", 0, start) + 1
        self.take("ident", "module")
        symbol = self.take("ident").value
        path = self.take("str").value
        condition, body = self.declaration_body()
        if not isinstance(body, Obj):
            raise self.error(f"module {symbol}: only a plain object body is supported")
        return Module(symbol, "".join(path), condition, body, line)


def _with_leading_comments(text: str, start: int, end: int) -> str:
    """The declaration's source plus the comment lines right above it."""
    lines = text[:start].split("\n")
    lead: list[str] = []
    for line in reversed(lines[:-1]):
        if line.strip().startswith("//"):
            lead.insert(0, line)
        else:
            break
    return "\n".join([*lead, text[start:end]])


def _parse_expr(source: str, offset: int, whole: str) -> Node:
    tokens = _lex(source, offset)
    parser = _Parser(whole, [t for t in tokens if t.kind != "nl"])
    node = parser.expr()
    parser.take("eof")
    return node


def parse(text: str, path: Path | str = "<text>") -> Template:
    return _Parser(text, _lex(text)).template(Path(path))


def parse_file(path: Path) -> Template:
    try:
        return parse(path.read_text(), path)
    except BicepSyntaxError as exc:
        raise BicepSyntaxError(f"{path}: {exc}") from None


# Resolving what the tests need ------------------------------------------------------------------------------------


@dataclass
class Scope:
    """Names visible in one template: its vars, and its params bound to the caller's expressions (or defaults)."""

    template: Template
    bindings: dict[str, tuple[Node, Scope]] = field(default_factory=dict)

    def lookup(self, name: str) -> tuple[Node, Scope] | None:
        if name in self.template.vars:
            return self.template.vars[name], self
        if name in self.bindings:
            return self.bindings[name]
        param = self.template.params.get(name)
        if param is not None and param.default is not None:
            return param.default, self
        return None

    def module_scope(self, module: Module, root: Path) -> Scope:
        child = parse_file((self.template.path.parent / module.path).resolve())
        return Scope(child, {name: (node, self) for name, node in module.params.items.items()})

    def resolve(self, node: Node) -> tuple[Node, Scope]:
        """Follow references to vars and bound params until something that is not a plain name."""
        scope: Scope = self
        seen = 0
        while isinstance(node, Ref) and (found := scope.lookup(node.name)) is not None:
            node, scope = found
            seen += 1
            if seen > 50:
                raise BicepSyntaxError(f"reference loop at {node.source}")
        return node, scope

    def object_keys(self, node: Node) -> tuple[set[str], set[str]]:
        """(keys always present, keys possibly present) of an object-valued expression."""
        node, scope = self.resolve(node)
        if isinstance(node, Obj):
            return set(node.items), set(node.items)
        if isinstance(node, Call) and node.name == "union":
            definite: set[str] = set()
            possible: set[str] = set()
            for arg in node.args:
                d, p = scope.object_keys(arg)
                definite |= d
                possible |= p
            return definite, possible
        if isinstance(node, Ternary):
            d1, p1 = scope.object_keys(node.then)  # type: ignore[arg-type]
            d2, p2 = scope.object_keys(node.otherwise)  # type: ignore[arg-type]
            return d1 & d2, p1 | p2
        raise BicepSyntaxError(f"cannot tell the keys of {node.source!r}")

    def object_value(self, node: Node, key: str) -> Node | None:
        """The expression a key of an object-valued expression holds (the last union argument that sets it)."""
        node, scope = self.resolve(node)
        if isinstance(node, Obj):
            return node.items.get(key)
        if isinstance(node, Call) and node.name == "union":
            for arg in reversed(node.args):
                if (value := scope.object_value(arg, key)) is not None:
                    return value
        if isinstance(node, Ternary):
            return scope.object_value(node.then, key) or scope.object_value(node.otherwise, key)  # type: ignore[arg-type]
        return None


def walk(node: Node | None) -> Iterator[Node]:
    """Every node under `node`, itself included."""
    if node is None:
        return
    yield node
    for value in vars(node).values():
        if isinstance(value, Node):
            yield from walk(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Node):
                    yield from walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, Node):
                    yield from walk(item)
