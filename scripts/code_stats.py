"""Lines per module and the longest function of each, for hawk_kernels/ (or the folder given).

    python scripts/code_stats.py [hawk_kernels]
"""
import ast
import pathlib
import sys


def main(root: str = "hawk_kernels") -> None:
    total = 0
    for path in sorted(pathlib.Path(root).rglob("*.py")):
        source = path.read_text()
        functions = [(node.end_lineno - node.lineno + 1, node.name) for node in ast.walk(ast.parse(source))
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        lines, (longest, name) = len(source.splitlines()), max(functions or [(0, "-")])
        total += lines
        print(f"{lines:5d}  {str(path):55s} longest: {name} ({longest} lines)")
    print(f"{total:5d}  total")


if __name__ == "__main__":
    main(*sys.argv[1:])
