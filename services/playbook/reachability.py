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
behind a cycle are answered too.
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
    questions: dict[int, list[tuple[str, str]]] = {}
    targets: set[str] = set()
    for a, b in set(asked):
        if a in index and b in index:
            questions.setdefault(index[a], []).append((a, b))
            targets.add(b)
    if not questions:
        return set()
    following = [[index[n] for n in edges[node] if n in index] for node in edges]
    order, component = _components(following)
    needs = [list({component[n] for m in members for n in following[m]} - {c}) for c, members in enumerate(order)]
    cyclic = [len(members) > 1 or members[0] in following[members[0]] for members in order]
    rank = {index[target]: r for r, target in enumerate(sorted(targets, key=lambda t: component[index[t]]))}
    by_component: dict[int, list[tuple[str, str]]] = {}
    for a, asked_of in questions.items():
        by_component.setdefault(component[a], []).extend(asked_of)
    rank_of = {b: rank[index[b]] for b in targets}
    readers = [0] * len(order)
    for wanted in needs:
        for d in wanted:
            readers[d] += 1
    width = len(rank)
    alive, live_bits = _peak_alive(needs, readers, order, rank)
    if live_bits > BUDGET_BITS:
        width = max(_WORD, BUDGET_BITS // alive)
    found: set[tuple[str, str]] = set()
    for low in range(0, len(rank), width):
        found |= _sweep(order, needs, readers, cyclic, by_component, rank, rank_of, low, low + width)
    return found


def _sweep(order: list[list[int]], needs: list[list[int]], readers: list[int], cyclic: list[bool],
           questions: dict[int, list[tuple[str, str]]], rank: dict[int, int], rank_of: dict[str, int], low: int,
           high: int) -> set[tuple[str, str]]:
    """One pass for the targets ranked in [low, high): bit `r - low` stands for the target of rank r."""
    found: set[tuple[str, str]] = set()
    bits: dict[int, int] = {}  # node -> targets upstream of its dependents through it, while one still needs it
    remaining = list(readers)
    for c, members in enumerate(order):
        own = 0
        for m in members:
            if m in rank and low <= rank[m] < high:
                own |= 1 << (rank[m] - low)
        upstream = 0
        for d in needs[c]:
            upstream |= bits[d]
            remaining[d] -= 1
            if not remaining[d]:
                del bits[d]
        if cyclic[c]:
            upstream |= own
        for a, b in questions.get(c, ()):
            if low <= rank_of[b] < high and upstream >> (rank_of[b] - low) & 1:
                found.add((a, b))
        if remaining[c]:
            bits[c] = upstream | own
    return found


def _peak_alive(needs: list[list[int]], readers: list[int], order: list[list[int]],
                rank: dict[int, int]) -> tuple[int, int]:
    """The most nodes holding bits at once, and the most bits they could hold together (a bound)."""
    remaining = list(readers)
    before = [0] * len(order)  # targets swept before each node: the most bits its int can have
    seen = alive = most_alive = live_bits = most_bits = 0
    for c, members in enumerate(order):
        seen += sum(1 for m in members if m in rank)
        before[c] = seen
        for d in needs[c]:
            remaining[d] -= 1
            if not remaining[d]:
                alive, live_bits = alive - 1, live_bits - before[d]
        if remaining[c]:
            alive, live_bits = alive + 1, live_bits + seen
            most_alive, most_bits = max(most_alive, alive), max(most_bits, live_bits)
    return most_alive, most_bits


def _components(following: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """Strongly connected components (Tarjan, without recursion), each after every one it reaches.

    Nodes whose edges all point to earlier nodes (a plan written in order) are their own
    components already, in that order: no search is needed.
    """
    if all(n < node for node, nexts in enumerate(following) for n in nexts):
        return [[node] for node in range(len(following))], list(range(len(following)))
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
