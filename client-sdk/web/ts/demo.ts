// The demo whiteboard the server serves at `/`: strokes and shapes in the room's LoroDoc, live
// cursors, presence, chat, a poll and hand raising, the transport and edit latency on screen.
//
// URL parameters: `room` (default demo/board), `user`, `name`, `role` (teacher, student,
// viewer), `token` (else a dev-mode `/demo-token`, else a prompt), `wt` (WebTransport port,
// default the one `/connect-info` names), `transport` (`websocket` or `webtransport` only),
// `report` (a URL the page posts its transport and room to once joined: for the browser tests).

import { connect } from "./easel.js";
import type { ClientEvent, TransportName } from "./easel.js";
import { initLoro, LoroDoc } from "./loro.js";

interface Shape {
  kind: "stroke" | "rect" | "ellipse";
  color: string;
  points: number[];
}

const params = new URLSearchParams(location.search);
const roomId = params.get("room") ?? "demo/board";
const user = params.get("user") ?? `guest${Math.floor(Math.random() * 1000)}`;
const role = params.get("role") ?? "student";
const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

function colorOf(key: string): string {
  let h = 0;
  for (const c of key) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360} 70% 45%)`;
}

async function token(): Promise<string> {
  const given = params.get("token");
  if (given) return given;
  const q = new URLSearchParams({ room: roomId, user, role });
  const res = await fetch(`/demo-token?${q}`);
  if (res.ok) return (await res.text()).trim();
  const typed = prompt("A token for this room (the server has a configured secret):");
  if (!typed) throw new Error("no token");
  return typed.trim();
}

async function main(): Promise<void> {
  await initLoro();
  const doc = new LoroDoc();
  const shapes = doc.getList("shapes");
  // The server says where its WebTransport listens: no URL parameter for a non-default port.
  const info = (await (await fetch("/connect-info")).json()) as { webTransportPort: number; certHash: string };
  const certHash = info.certHash;
  const forced = params.get("transport") as TransportName | null;
  const first = await token();
  let used = false;
  const client = await connect(location.origin, {
    getToken: () => (used ? token() : ((used = true), first)),
    certHash,
    name: params.get("name") ?? user,
    webTransportUrl: `https://${location.hostname}:${params.get("wt") ?? info.webTransportPort}/`,
    transports: forced ? [forced] : undefined,
  });
  const room = client.join(roomId, doc);
  $("me").textContent = `${user} (${role}) in ${roomId}`;
  document.body.dataset.role = role;

  const status = (): void => {
    $("transport").textContent = client.transport ?? "offline";
    $("latency").textContent = client.latencyMs === undefined ? "–" : `${client.latencyMs.toFixed(1)} ms`;
  };
  client.on("connection", status);
  client.on("latency", status);
  const log = (text: string): void => {
    const li = document.createElement("li");
    li.textContent = text;
    $("log").prepend(li);
  };
  const problem = (e: ClientEvent): void => log(`${e.type}: ${"message" in e ? e.message : ""}`);
  for (const t of ["rejected", "refused", "error", "joinFailed"] as const) client.on(t, problem);
  client.on("connection", (e) => log(e.state === "connected" ? `connected over ${e.transport}` : e.state));

  // The board: shapes from the document, drawn again on every change.
  const board = $<HTMLCanvasElement>("board");
  const ctx = board.getContext("2d")!;
  const draw = (): void => {
    ctx.clearRect(0, 0, board.width, board.height);
    for (const s of shapes.toJSON() as Shape[]) drawShape(ctx, s);
    if (live) drawShape(ctx, live);
  };
  doc.subscribe(() => draw());
  let live: Shape | undefined;
  const at = (e: PointerEvent): [number, number] => {
    const r = board.getBoundingClientRect();
    return [Math.round(e.clientX - r.left), Math.round(e.clientY - r.top)];
  };
  board.addEventListener("pointerdown", (e) => {
    const kind = ($<HTMLSelectElement>("tool").value as Shape["kind"]) ?? "stroke";
    live = { kind, color: colorOf(user), points: at(e) };
    board.setPointerCapture(e.pointerId);
  });
  board.addEventListener("pointermove", (e) => {
    const [x, y] = at(e);
    room.cursor(x, y);
    if (!live) return;
    if (live.kind === "stroke") live.points.push(x, y);
    else live.points = [live.points[0]!, live.points[1]!, x, y];
    draw();
  });
  board.addEventListener("pointerup", () => {
    if (live && live.points.length >= 4) {
      shapes.push(live);
      doc.commit();
    }
    live = undefined;
    draw();
  });

  // Cursors and presence.
  const cursors = $("cursors");
  const nameOf = (i: number): string => room.participants.get(i)?.name || room.participants.get(i)?.user || `#${i}`;
  room.on("cursors", (e) => {
    for (const c of e.cursors) {
      let el = document.getElementById(`cursor-${c.participant}`);
      if (!el) {
        el = document.createElement("div");
        el.id = `cursor-${c.participant}`;
        el.className = "cursor";
        cursors.append(el);
      }
      const name = nameOf(c.participant);
      el.textContent = name;
      el.style.borderColor = el.style.color = colorOf(room.participants.get(c.participant)?.user ?? name);
      el.style.transform = `translate(${c.x}px, ${c.y}px)`;
    }
  });
  const people = (): void => {
    const list = $("people");
    list.replaceChildren(
      ...[...room.participants.values()].map((p) => {
        const li = document.createElement("li");
        li.style.color = colorOf(p.user);
        li.textContent = `${p.name || p.user} · ${p.role}${p.handRaised ? " ✋" : ""}${p.index === room.me ? " (you)" : ""}`;
        return li;
      }),
    );
  };
  for (const t of ["joined", "participantJoined", "participantLeft", "participantUpdated"] as const) room.on(t, people);
  room.on("participantLeft", (e) => document.getElementById(`cursor-${e.index}`)?.remove());

  // Chat.
  room.on("chat", (e) => {
    const li = document.createElement("li");
    li.textContent = `${e.message.name || e.message.user}: ${e.message.text}`;
    $("chat").append(li);
  });
  $<HTMLFormElement>("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("chat-text");
    if (!input.value) return;
    try {
      room.chat(input.value);
      input.value = "";
    } catch (err) {
      log(String(err));
    }
  });

  // Poll and hands: teachers start and close, students answer and raise.
  const guard = (f: () => void) => () => {
    try {
      f();
    } catch (err) {
      log(String(err));
    }
  };
  let pollId: bigint | undefined;
  $("poll-start").addEventListener(
    "click",
    guard(() => room.startPoll($<HTMLInputElement>("poll-question").value || "Ready?", ["Yes", "No"])),
  );
  $("poll-close").addEventListener("click", guard(() => pollId !== undefined && room.closePoll(pollId)));
  room.on("pollStarted", (e) => {
    pollId = e.poll.pollId;
    $("poll-q").textContent = e.poll.question;
    const answers = $("poll-answers");
    answers.replaceChildren(
      ...e.poll.options.map((o, i) => {
        const b = document.createElement("button");
        b.textContent = o;
        b.onclick = guard(() => room.answerPoll(e.poll.pollId, [i]));
        return b;
      }),
    );
  });
  room.on("pollResults", (e) => {
    $("poll-results").textContent = `${e.results.counts.join(" / ")} (${e.results.respondents} answered${e.results.closed ? ", closed" : ""})`;
  });
  $("hand").addEventListener("click", guard(() => room.raiseHand()));
  room.on("handQueue", (e) => {
    $("hands").replaceChildren(
      ...e.queue.map((i) => {
        const li = document.createElement("li");
        li.textContent = `✋ ${nameOf(i)} `;
        const b = document.createElement("button");
        b.textContent = "lower";
        b.onclick = guard(() => room.lowerHand(i));
        li.append(b);
        return li;
      }),
    );
  });

  const reportTo = params.get("report");
  if (reportTo) {
    room.on("joined", (e) => {
      const body = JSON.stringify({ ok: true, label: user, transport: client.transport, participant: e.participant, role });
      void fetch(reportTo, { method: "POST", mode: "no-cors", body });
    });
  }
  (window as unknown as { demo: unknown }).demo = { client, room, doc };
  status();
}

function drawShape(ctx: CanvasRenderingContext2D, s: Shape): void {
  const p = s.points;
  ctx.strokeStyle = s.color;
  ctx.lineWidth = 3;
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.beginPath();
  if (s.kind === "stroke") {
    ctx.moveTo(p[0]!, p[1]!);
    for (let i = 2; i + 1 < p.length; i += 2) ctx.lineTo(p[i]!, p[i + 1]!);
  } else if (s.kind === "rect") {
    ctx.rect(p[0]!, p[1]!, p[2]! - p[0]!, p[3]! - p[1]!);
  } else {
    ctx.ellipse((p[0]! + p[2]!) / 2, (p[1]! + p[3]!) / 2, Math.abs(p[2]! - p[0]!) / 2, Math.abs(p[3]! - p[1]!) / 2, 0, 0, 2 * Math.PI);
  }
  ctx.stroke();
}

main().catch((e: unknown) => {
  document.getElementById("log")?.prepend(Object.assign(document.createElement("li"), { textContent: String(e) }));
});
