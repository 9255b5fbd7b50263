// The official TypeScript SDK client against pgmcp: every tool's schemas compile with Ajv
// (JSON Schema 2020-12, strict), and tools are called over HTTP or stdio.
//
//   node ts_client.mjs http URL
//   node ts_client.mjs stdio COMMAND [ARG ...]     (the server's settings come from the environment)
//
// Prints one JSON object (the findings) on stdout; exits 1 when a check failed.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import Ajv2020 from "ajv/dist/2020.js";

const [mode, target, ...rest] = process.argv.slice(2);
const failures = [];
const report = { mode, protocolVersion: null, tools: [], calls: {}, failures };

function check(ok, what) {
  if (!ok) failures.push(what);
}

const transport =
  mode === "http"
    ? new StreamableHTTPClientTransport(new URL(target))
    : new StdioClientTransport({ command: target, args: rest, env: process.env, stderr: "ignore" });
const client = new Client({ name: "pgmcp-ts-check", version: "1.0.0" });
await client.connect(transport);
report.protocolVersion = transport.protocolVersion ?? null;

const { tools } = await client.listTools();
const ajv = new Ajv2020({ strict: true, allErrors: true, strictTypes: false });
for (const tool of tools) {
  report.tools.push(tool.name);
  for (const [kind, schema] of [
    ["inputSchema", tool.inputSchema],
    ["outputSchema", tool.outputSchema],
  ]) {
    if (schema === undefined) {
      failures.push(`${tool.name}: no ${kind}`);
      continue;
    }
    try {
      ajv.compile(schema);
    } catch (err) {
      failures.push(`${tool.name}: ${kind} does not compile with Ajv: ${err.message}`);
    }
  }
}

// The SDK checks every structuredContent against the tool's outputSchema (and throws when it does not match).
async function call(name, args) {
  try {
    const result = await client.callTool({ name, arguments: args });
    const text = result.content?.[0]?.text ?? "";
    report.calls[name] = { isError: result.isError === true, structured: result.structuredContent ?? null };
    check(typeof text === "string" && text.length > 0, `${name}: no text content`);
    return result;
  } catch (err) {
    failures.push(`${name}: ${err.message}`);
    return null;
  }
}

const listed = await call("list_connections", {});
check(listed?.structuredContent?.connections?.some((c) => c.connection_id === "default"), "list_connections: no default");
const query = await call("execute_query", {
  connection_id: "default",
  query: "SELECT $1::int + 1 AS answer",
  params: [41],
});
check(query?.structuredContent?.rows?.[0]?.answer === 42, "execute_query: wrong answer");
await call("list_schemas", { connection_id: "default" });
await call("list_tables", { connection_id: "default" });
await call("search_objects", { connection_id: "default", pattern: "pg", kinds: ["schema", "table"] });
await call("health_check", {});
const blocked = await call("execute_query", { connection_id: "default", query: "DROP TABLE nothing" });
check(blocked?.isError === true && JSON.parse(blocked.content[0].text).error_type === "query_blocked", "blocked: not query_blocked");

try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
  failures.push("an unknown tool answered a result, not a JSON-RPC error");
} catch (err) {
  report.unknownToolCode = err instanceof McpError ? err.code : String(err);
  check(err instanceof McpError && err.code === -32602, `unknown tool: ${err.message}`);
}
try {
  await client.getPrompt({ name: "no_such_prompt" });
  failures.push("an unknown prompt answered a result");
} catch (err) {
  check(err instanceof McpError && err.code === -32602, `unknown prompt: code ${err.code}`);
}
const completion = await client.complete({
  ref: { type: "ref/resource", uri: "postgres://{connection_id}/{schema_name}/{table}/schema" },
  argument: { name: "connection_id", value: "def" },
});
check(completion.completion.values.includes("default"), "completion: no default");

await client.close();
process.stdout.write(JSON.stringify(report) + "\n");
process.exit(failures.length ? 1 : 0);
