// The staff live view (/admin/rooms/presence/live/): polls live.json and redraws the nodes
// and their rooms. Plain DOM, text through textContent only (room names come from users).

const root = document.getElementById('synctv-live');

function when(epochMs) {
  if (epochMs === null || epochMs === undefined) return '\u2014';
  return `${new Date(epochMs).toISOString().replace('T', ' ').slice(0, 19)} UTC`;
}

function cell(tag, text, attributes = {}) {
  const element = document.createElement(tag);
  element.textContent = text;
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

function row(...cells) {
  const tr = document.createElement('tr');
  tr.append(...cells);
  return tr;
}

function roomRow(room) {
  const link = cell('a', room.room_id, { href: `../../room/${encodeURIComponent(room.room_id)}/change/` });
  const th = document.createElement('th');
  th.scope = 'row';
  th.append(link);
  const tr = row(th, cell('td', room.name), cell('td', String(room.connections)));
  tr.className = 'synctv-room';
  return tr;
}

function nodeModule(node) {
  const module = document.createElement('div');
  module.className = 'module synctv-node';
  module.dataset.nodeId = node.node_id;
  const table = document.createElement('table');
  const state = node.alive ? 'alive' : 'not alive';
  table.append(cell('caption', `${node.node_id} \u00b7 ${state} \u00b7 ${node.connections} connection(s)`));
  table.append(row(cell('th', 'Started', { scope: 'row' }), cell('td', when(node.started_at), { colspan: '2' })));
  table.append(row(cell('th', 'Last heartbeat', { scope: 'row' }), cell('td', when(node.last_seen), { colspan: '2' })));
  if (node.rooms.length === 0) table.append(row(cell('td', 'No open sockets.', { colspan: '3' })));
  for (const room of node.rooms) table.append(roomRow(room));
  module.append(table);
  return module;
}

async function refresh() {
  const status = document.getElementById('synctv-live-status');
  try {
    const answer = await fetch(root.dataset.url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const state = await answer.json();
    document.getElementById('synctv-live-nodes').replaceChildren(...state.nodes.map(nodeModule));
    status.textContent = `Refreshed at ${when(state.generated_at)} (by node ${state.node_id}).`;
  } catch (error) {
    status.textContent = `Could not refresh: ${error.message}`;
  }
}

if (root) {
  const every = Number(root.dataset.refreshMs) || 3000;
  setInterval(refresh, every);
}
