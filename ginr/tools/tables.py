"""The markdown tables every tool prints and writes (benchmark, memory check, comparisons, evaluation)."""

from collections.abc import Iterable, Sequence


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], *, align: str | None = None
) -> str:
    """A markdown table, one line per row, without a final newline; a ``|`` inside a cell is escaped.

    Without ``align``, cells are not padded and every rule is ``---``. With ``align``, one letter per
    column (``l`` left, ``r`` right), every column is padded to its widest cell and right-aligned columns
    get a ``---:`` rule, so the text lines up as it renders."""
    head, *body = [[str(cell).replace("|", "\\|") for cell in row] for row in [header, *rows]]
    line = lambda cells: "| " + " | ".join(cells) + " |"
    if align is None:
        return "\n".join([line(head), "|" + "---|" * len(head), *map(line, body)])
    if len(align) != len(head) or set(align) - {"l", "r"}:
        raise ValueError(f"align={align!r}: expected l or r for each of the {len(head)} columns")
    widths = [max(3, *(len(row[i]) for row in [head, *body])) for i in range(len(head))]
    rule = ["-" * w if a == "l" else "-" * (w - 1) + ":" for a, w in zip(align, widths, strict=True)]
    pad = lambda cells: [
        c.ljust(w) if a == "l" else c.rjust(w) for c, a, w in zip(cells, align, widths, strict=True)
    ]
    return "\n".join(line(pad(cells)) for cells in [head, rule, *body])
