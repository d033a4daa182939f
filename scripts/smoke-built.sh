#!/usr/bin/env bash
# `npm run smoke:built`: the smoke suite against the build output, as CI runs it. Builds, starts
# `node dist/server.js` on a fresh embedded store and a free port, makes a test-mode key with the built
# CLI, runs `npm run smoke` over real HTTP (admin API included), then stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

npm run -s build
work=$(mktemp -d)
port=$(node -e "const s=require('node:net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
# Built-in accounts on, so that their smoke file runs the whole flow.
export DATA_DIR="$work/data" PORT="$port" HOST=127.0.0.1 LOG_LEVEL=warn LOCAL_ACCOUNTS=on
# Keep no admin token from the caller's environment: the CLI must read the one this server generated.
unset ADMIN_TOKEN DATABASE_URL REDIS_URL

node dist/server.js >"$work/server.log" 2>&1 &
server=$!
stop () {
  kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 60); do
  curl -fsS "$base/health/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { echo "the server exited:"; cat "$work/server.log"; exit 1; }
  sleep 1
done
curl -fsS "$base/health/ready" >/dev/null || { echo "the server is not ready:"; cat "$work/server.log"; exit 1; }

node dist/cli.js licenses grant --user smoke-qa --plan pro >/dev/null
key=$(node dist/cli.js keys create --user smoke-qa --mode test --name smoke --json | node -e "process.stdout.write(JSON.parse(require('node:fs').readFileSync(0,'utf8')).key)")
admin=$(node -e "process.stdout.write(JSON.parse(require('node:fs').readFileSync(process.argv[1],'utf8')).adminToken)" "$DATA_DIR/secrets.json")

echo "smoke suite against the built server at $base"
BASE_URL="$base" SMOKE_API_KEY="$key" SMOKE_ADMIN_TOKEN="$admin" npm run -s smoke
