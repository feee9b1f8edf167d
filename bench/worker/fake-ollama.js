// fake-ollama.js PORT [MODEL] — an Ollama stand-in that answers at once, for bench/worker/run.sh.
// GET /api/tags lists MODEL; POST /api/chat streams one NDJSON piece and the final "done" message with counts.
'use strict';
const http = require('http');
const port = Number(process.argv[2]);
const model = process.argv[3] || 'bench:1b';

http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/api/tags') {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ models: [{ name: model, model }] }));
    return;
  }
  if (req.method === 'POST' && req.url === '/api/chat') {
    req.resume();
    req.on('end', () => {
      const now = new Date().toISOString();
      res.setHeader('Content-Type', 'application/x-ndjson');
      res.write(JSON.stringify({ model, created_at: now, message: { role: 'assistant', content: 'ok' }, done: false }) + '\n');
      res.end(JSON.stringify({
        model, created_at: now, message: { role: 'assistant', content: '' }, done_reason: 'stop', done: true,
        total_duration: 1000, load_duration: 0, prompt_eval_count: 1, prompt_eval_duration: 0, eval_count: 1, eval_duration: 1000,
      }) + '\n');
    });
    return;
  }
  res.statusCode = 404;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({ error: 'not found' }));
}).listen(port, '127.0.0.1');
