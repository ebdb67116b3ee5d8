// An MCP server's request decoding as Go servers do it: encoding/json into structs, which
// matches keys case-insensitively (with Unicode folding). It answers initialize and tools/call;
// a call of delete_repo leaves a marker file (argv[1]) behind.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"params"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			continue
		}
		var result string
		switch req.Method {
		case "initialize":
			result = `{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"go","version":"0"}}`
		case "tools/call":
			if req.Params.Name == "delete_repo" {
				os.WriteFile(os.Args[1], []byte("deleted\n"), 0o600)
			}
			text, _ := json.Marshal("called " + req.Params.Name)
			result = fmt.Sprintf(`{"content":[{"type":"text","text":%s}]}`, text)
		default:
			if req.ID == nil {
				continue
			}
			result = `{}`
		}
		fmt.Printf("{\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":%s}\n", req.ID, result)
	}
}
