// Mermaid's own parser over many diagrams in one node process (node start-up is
// the slow part). Usage: node check.mjs DIAGRAMS.json  -> JSON on standard output.
// DIAGRAMS.json is a list of Mermaid texts; for each, the answer says whether
// Mermaid's grammar accepted it and, if so, what Mermaid understood: the title,
// the participants (id and the label it shows) and the messages and notes in
// order (from, to, the text it shows, Mermaid's line type).  The text is what
// Mermaid's renderer will write: its entity codes (#35; ...) turned into HTML
// character references (&#35;), as mermaid.render does before it draws.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;        // mermaid's DOMPurify needs a window to load
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
const version = createRequire(import.meta.url)("mermaid/package.json").version;
mermaid.initialize({ startOnLoad: false });
const api = mermaid.mermaidAPI;

// mermaid's decodeEntities (src/mermaidAPI.ts), the step between parsing and drawing
const decode = (s) => s.replace(/ﬂ°°/g, "&#").replace(/ﬂ°/g, "&").replace(/¶ß/g, ";");

const results = [];
for (const text of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  try {
    // what mermaid.parse and mermaid.render do with a text: its type detected, its
    // entity codes encoded, the diagram's own grammar run, its database filled
    const diagram = await api.getDiagramFromText(text);
    const db = diagram.db;
    const actors = [...db.getActors().values()].map((a) => ({ id: a.name, label: decode(a.description) }));
    const messages = db.getMessages().map((m) => ({
      from: m.from ?? null, to: m.to ?? null, text: decode(String(m.message ?? "")), type: m.type,
    }));
    results.push({ ok: true, length: text.length, type: diagram.type, title: decode(db.getDiagramTitle?.() ?? ""), actors, messages });
  } catch (e) {
    results.push({ ok: false, length: text.length, error: String(e.message ?? e).split("\n").slice(0, 3).join(" | ") });
  }
}
const config = api.getConfig();
process.stdout.write(JSON.stringify({ mermaid: version, maxTextSize: config.maxTextSize, results }));
