"""Tree shapes shared by the op tests."""


def layered(branching):
    """Medusa-like: every node of depth k has branching[k] children."""
    parents, frontier = [-1], [0]
    for width in branching:
        nxt = []
        for node in frontier:
            for _ in range(width):
                parents.append(node)
                nxt.append(len(parents) - 1)
        frontier = nxt
    return parents
