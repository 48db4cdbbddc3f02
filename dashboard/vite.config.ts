/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The built dashboard is part of the server's package: the HTTP edge serves it at `/`, so a
// server installed from PyPI (no Node) serves it too. `.ci/run` rebuilds it and fails when the
// build differs from what is committed.
export default defineConfig({
  base: "/",
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
  build: {
    outDir: "../server/src/runwire_server/dashboard",
    emptyOutDir: true,
    target: "es2022",
    // The edge compresses what it serves; the committed files stay plain and reviewable.
    reportCompressedSize: true,
    sourcemap: false,
  },
  server: {
    // `npm run dev` against a server on the default HTTP port.
    proxy: { "/runwire.v1.": "http://127.0.0.1:50080" },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
