"""A small MCP server (stdio) for the agent tests: `add`, and `write_marker`, which creates a
file (so a test can prove a denied call never reached the server)."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("demo")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def write_marker(path: str) -> str:
    """Create the file at path."""
    with open(path, "w") as fh:
        fh.write("reached\n")
    return "written"


if __name__ == "__main__":
    server.run()
