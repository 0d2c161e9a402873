"""Which of the asked pairs of a graph are connected, in memory linear in the graph.

The validator asks "is step Y sure to have finished before step X" once per
`${steps.Y...}` written in step X. Each step's whole upstream set answers that, but a
sequence of n steps holds n²/2 entries: 10,000 steps took 2.4 GB. Interval labels or
chain covers are linear only for narrow graphs, and a search per question walks the
whole sequence when the reference reaches far back. So: one sweep visits the graph
needs-first and carries, per node, only the *asked* targets upstream of it, as the bits
of a Python int (64 targets a machine word); a node's bits are dropped as soon as the
last node needing it has read them. A sequence keeps one or two such ints alive at a
time. When the live bits could pass `BUDGET_BITS` (wide graphs that keep many nodes
alive while many targets are asked), the targets are swept in slices, one pass each,
so memory stays bounded and time grows by the number of passes, never by the square
of the steps. Cycles are folded into one node first (Tarjan), so steps caught in or
behind a cycle are answered too. Before any sweep, a question about a node before the
prefix of nodes that all are upstream (`_covered`) is answered at once: in a plan written
in order, that is every question, and a sweep over 100,000 steps OR-ed ints of
thousands of bits at every step.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

BUDGET_BITS = 1 << 28  # live target bits per pass: 32 MiB of ints at most, whatever the graph's shape
_WORD = 64  # targets per pass at the least: one machine word


def reachable_pairs(edges: Mapping[str, Sequence[str]], asked: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """The asked pairs `(a, b)` where `b` is reached from `a` by following one edge or more.

    Edges to nodes that are not keys of `edges` are ignored.
    """
    index = {node: i for i, node in enumerate(edges)}
    component, needs, cyclic = _condensed([[index[n] for n in nexts if n in index] for nexts in edges.values()])
    covered = _covered(needs)
    found: set[tuple[str, str]] = set()
    questions: dict[int, list[tuple[str, str, int]]] = {}  # component -> (a, b, b's component)
    for a, b in set(asked):
        if a in index and b in index:
            source, target = component[index[a]], component[index[b]]
            if target < covered[source]:
                found.add((a, b))
            else:
                questions.setdefault(source, []).append((a, b, target))
    if not questions:
        return found
    rank = {target: r for r, target in enumerate(sorted({t for asked_of in questions.values() for *_, t in asked_of}))}
    readers = [0] * len(needs)
    for wanted in needs:
        for d in wanted:
            readers[d] += 1
    width = len(rank)
    alive, live_bits = _peak_alive(needs, readers, rank)
    if live_bits > BUDGET_BITS:
        width = max(_WORD, BUDGET_BITS // alive)
    for low in range(0, len(rank), width):
        found.update(_sweep(needs, readers, cyclic, questions, rank, low, low + width))
    return found


def _covered(needs: list[list[int]]) -> list[int]:
    """For each node (needs-first order), a k such that every node before the k-th is upstream of it: what the
    nodes it needs cover, then each node it needs that comes right after. In a plan written in order (each unit
    needs the one before) that answers every question about an earlier unit, with no sweep at all."""
    covered = [0] * len(needs)
    for c, wanted in enumerate(needs):
        k = 0
        for d in wanted:
            if covered[d] > k:
                k = covered[d]
        if wanted:
            ahead = set(wanted) if len(wanted) > 8 else wanted
            while k in ahead:
                k += 1
        covered[c] = k
    return covered


def _sweep(needs: list[list[int]], readers: list[int], cyclic: list[bool],
           questions: dict[int, list[tuple[str, str, int]]], rank: dict[int, int], low: int,
           high: int) -> list[tuple[str, str]]:
    """One pass for the targets ranked in [low, high): bit `r - low` stands for the target of rank r."""
    found: list[tuple[str, str]] = []
    bits: dict[int, int] = {}  # node -> targets upstream of its dependents through it, while one still needs it
    remaining = list(readers)
    for c, needed in enumerate(needs):
        upstream = 0
        for d in needed:
            upstream |= bits[d]
            remaining[d] -= 1
            if not remaining[d]:
                del bits[d]
        r = rank.get(c)
        own = 1 << (r - low) if r is not None and low <= r < high else 0
        if cyclic[c]:
            upstream |= own
        for a, b, target in questions.get(c, ()):
            r = rank[target] - low
            if 0 <= r < high - low and upstream >> r & 1:
                found.append((a, b))
        if remaining[c]:
            bits[c] = upstream | own
    return found


def _peak_alive(needs: list[list[int]], readers: list[int], rank: dict[int, int]) -> tuple[int, int]:
    """The most nodes holding bits at once, and the most bits they could hold together (a bound)."""
    remaining = list(readers)
    before = [0] * len(needs)  # targets swept before each node: the most bits its int can have
    seen = alive = most_alive = live_bits = most_bits = 0
    for c, needed in enumerate(needs):
        seen += c in rank
        before[c] = seen
        for d in needed:
            remaining[d] -= 1
            if not remaining[d]:
                alive, live_bits = alive - 1, live_bits - before[d]
        if remaining[c]:
            alive, live_bits = alive + 1, live_bits + seen
            most_alive, most_bits = max(most_alive, alive), max(most_bits, live_bits)
    return most_alive, most_bits


def _condensed(following: list[list[int]]) -> tuple[list[int], list[list[int]], list[bool]]:
    """The graph with each cycle folded into one node, nodes in needs-first order.

    Returns each node's component, each component's edges to others, and whether it is a
    cycle. A graph whose edges all point to earlier nodes (a plan written in order) is
    that already; others go through Tarjan's algorithm, without recursion.
    """
    count = len(following)
    if all(n < node for node, nexts in enumerate(following) for n in nexts):
        return list(range(count)), following, [False] * count
    order, component = _components(following)
    needs = [list({component[n] for m in members for n in following[m]} - {c}) for c, members in enumerate(order)]
    return component, needs, [len(members) > 1 or members[0] in following[members[0]] for members in order]


def _components(following: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """Strongly connected components, each after every one it reaches."""
    count = len(following)
    index = [-1] * count
    low = [0] * count
    on_stack = [False] * count
    component = [-1] * count
    stack: list[int] = []
    order: list[list[int]] = []
    seen = 0
    for root in range(count):
        if index[root] >= 0:
            continue
        index[root] = low[root] = seen
        seen += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, iter(following[root]))]
        while work:
            node, nexts = work[-1]
            for nxt in nexts:
                if index[nxt] < 0:
                    index[nxt] = low[nxt] = seen
                    seen += 1
                    stack.append(nxt)
                    on_stack[nxt] = True
                    work.append((nxt, iter(following[nxt])))
                    break
                if on_stack[nxt]:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    members: list[int] = []
                    while not members or members[-1] != node:
                        members.append(stack.pop())
                        on_stack[members[-1]] = False
                        component[members[-1]] = len(order)
                    order.append(members)
    return order, component
