/* AniMatrix Studio, Rate tab: two locked players, keyboard shortcuts, time and replay counting.
 *
 * Loaded once per page (launch(head=...)). The player markup comes from Python
 * (app/services/rating_view.py: #amx-player with two <video>s and a transport bar) and is
 * replaced whenever a new pair loads, so nothing here holds on to elements: a requestAnimationFrame
 * loop notices a new #amx-player and binds to it. Choices are made by clicking the Gradio radios
 * (so Gradio's own events and autosave run exactly as for a mouse click).
 *
 * Frames: `frame` is 0-based inside; the counter shows it 1-based (timesheet style). A paused
 * player sits in the middle of a frame ((n + 0.5) / fps) so rounding never shows the neighbour.
 */
(() => {
  if (window.amxRate) return;
  const DIMS = ["prompt_understanding", "artistic_motion", "style_fidelity", "visual_quality",
                "character_consistency"];
  const CHOICE_KEYS = { a: "A", b: "B", t: "tie", x: "both_bad" };
  const CHOICE_TEXT = { A: "A", B: "B", tie: "Tie", both_bad: "Both bad" };
  const RATES = [1, 0.5, 0.25];
  const REVEAL_SECONDS = 6;
  const IDLE_MS = 90000; // no input for this long (and not playing): time stops counting

  const st = {
    root: null, key: "", a: null, b: null, aid: null, fps: 8, frames: 1, frame: 0, playing: false, ended: false,
    rate: 1, loop: true, flipped: false, dim: 0, prefix: null, prefixUntil: 0, skipUntil: 0,
    token: "", elapsed: 0, replays: 0, lastTick: 0, lastInput: 0, lastT: 0, lastSync: 0, lastStrip: 0,
    reveal: { shown: false, at: 0, hold: false }, note: "", noteUntil: 0,
  };

  const $ = (sel) => document.querySelector(sel);
  const shown = (el) => !!(el && el.isConnected && el.offsetParent !== null);
  const clamp = (n, lo, hi) => Math.max(lo, Math.min(hi, n));
  const now = () => performance.now();

  function newToken() {
    return (window.crypto && crypto.randomUUID) ? crypto.randomUUID().replace(/-/g, "")
      : String(Math.random()).slice(2) + String(Date.now());
  }

  // -- binding ---------------------------------------------------------------------------------
  // Gradio may patch the player's markup in place (same elements, new attributes) when the next
  // pair arrives, so a new pair is told by what the markup says, not by a new element: the
  // serving, its frame count and rate, and the two files. Any change rebinds, and a new serving
  // or new files start at frame 1 with the new frame count (issue 17: a 17-frame pair after a
  // 9-frame one used to keep "/ 9").
  function keyOf(root) {
    if (!root) return "";
    const a = root.querySelector("#amx-video-a"), b = root.querySelector("#amx-video-b");
    return [root.dataset.assignment, root.dataset.frames, root.dataset.fps,
            a ? a.getAttribute("src") : "", b ? b.getAttribute("src") : ""].join("|");
  }

  const hooked = new WeakSet();

  function bind(root) {
    const key = keyOf(root);
    const previous = st.key || "";
    st.root = root; st.key = key;
    st.a = root ? root.querySelector("#amx-video-a") : null;
    st.b = root ? root.querySelector("#amx-video-b") : null;
    if (!root || !st.a || !st.b) { st.a = st.b = null; return; }
    const aid = root.dataset.assignment;
    st.fps = Math.max(1, Number(root.dataset.fps) || 8);
    st.frames = Math.max(1, Number(root.dataset.frames) || 1);
    const files = key.split("|").slice(3).join("|"), before = previous.split("|").slice(3).join("|");
    if (aid !== st.aid || files !== before) { // a new pair: fresh counters, frame 1, first dimension, not flipped
      if (aid !== st.aid) { st.token = newToken(); st.elapsed = 0; st.replays = 0; }
      st.aid = aid; st.dim = 0; st.flipped = false; st.frame = 0; st.ended = false; st.lastInput = now();
    }
    st.frame = clamp(st.frame, 0, st.frames - 1);
    st.playing = false;
    for (const v of [st.a, st.b]) {
      v.pause();
      v.muted = true; v.loop = st.loop; v.playbackRate = st.rate; v.defaultPlaybackRate = st.rate;
      if (!hooked.has(v)) { hooked.add(v); v.addEventListener("ended", onEnded); }
      v.addEventListener("loadedmetadata", () => { if (!st.playing) seek(st.frame); }, { once: true });
    }
    seek(st.frame);
    paint();
  }

  function onEnded() {
    if (st.loop) return;
    st.playing = false; st.ended = true;
    if (st.a) st.a.pause();
    if (st.b) st.b.pause();
    st.frame = st.frames - 1;
    paint();
  }

  // -- transport -------------------------------------------------------------------------------
  function frameOf(t) { return clamp(Math.floor(t * st.fps + 1e-3), 0, st.frames - 1); }
  // What A shows (once it has loaded), so the counter never disagrees with the picture.
  function current() { return st.a && (st.playing || st.a.readyState >= 1) ? frameOf(st.a.currentTime) : st.frame; }

  function seek(n) {
    if (!st.a) return;
    st.frame = clamp(Math.round(n), 0, st.frames - 1);
    const t = (st.frame + 0.5) / st.fps;
    for (const v of [st.a, st.b]) { try { v.currentTime = t; } catch (e) { /* not loaded yet */ } }
    st.lastT = t;
    paint();
  }

  function pause() {
    if (!st.a) return;
    st.a.pause(); st.b.pause();
    st.playing = false;
    seek(frameOf(st.a.currentTime)); // both snap to the frame A was showing
  }

  function play() {
    if (!st.a) return;
    if (st.ended || (!st.loop && st.frame >= st.frames - 1)) { seek(0); st.replays += 1; }
    st.ended = false;
    st.b.currentTime = st.a.currentTime;
    st.playing = true;
    st.lastT = st.a.currentTime;
    for (const v of [st.a, st.b]) { const p = v.play(); if (p && p.catch) p.catch(() => {}); }
    paint();
  }

  function toggle() { if (st.playing) pause(); else play(); }
  function step(d) { if (st.playing) pause(); seek(st.frame + d); }

  function setRate(r) {
    st.rate = r;
    for (const v of [st.a, st.b]) if (v) { v.playbackRate = r; v.defaultPlaybackRate = r; }
    paint();
  }

  function cycleRate() { setRate(RATES[(RATES.indexOf(st.rate) + 1) % RATES.length]); }

  function setLoop(on) {
    st.loop = !!on;
    for (const v of [st.a, st.b]) if (v) v.loop = st.loop;
    paint();
  }

  function flip() {
    if (!st.root) return;
    const f = current();
    st.flipped = !st.flipped;
    if (!st.playing) seek(f);
    say(st.flipped ? "Flipped: B is on the left now (F flips back)" : "A is on the left again");
    paint();
  }

  // -- painting --------------------------------------------------------------------------------
  function say(text, ms = 2500) { st.note = text; st.noteUntil = now() + ms; paintStrip(); }

  function paint() {
    const root = st.root;
    if (!root) return;
    root.classList.toggle("amx-flipped", st.flipped);
    root.classList.toggle("amx-playing", st.playing);
    const f = current();
    const counter = root.querySelector(".amx-counter");
    if (counter) {
      counter.textContent = `Frame ${f + 1} / ${st.frames} · ${(f / st.fps).toFixed(2)} s`;
      counter.dataset.frame = String(f);
    }
    const scrub = root.querySelector(".amx-scrub");
    if (scrub && document.activeElement !== scrub) scrub.value = String(f);
    const playBtn = root.querySelector(".amx-play");
    if (playBtn) playBtn.textContent = st.playing ? "❚❚ Pause" : "▶︎ Play";
    root.querySelectorAll("[data-rate]").forEach((b) => b.classList.toggle("amx-on", Number(b.dataset.rate) === st.rate));
    const loop = root.querySelector(".amx-loop");
    if (loop) loop.checked = st.loop;
    const flipBtn = root.querySelector(".amx-flip");
    if (flipBtn) flipBtn.classList.toggle("amx-on", st.flipped);
  }

  function checked(id) {
    const el = document.querySelector(`#${id} input:checked`);
    return el ? el.value : null;
  }

  function paintStrip() {
    const root = st.root;
    if (!root) return;
    DIMS.forEach((dim, n) => {
      const chip = root.querySelector(`.amx-chip[data-dim="${dim}"]`);
      const row = document.getElementById(`rate-row-${dim}`);
      if (row) row.classList.toggle("amx-current", n === st.dim);
      if (!chip) return;
      chip.classList.toggle("amx-current", n === st.dim);
      const choice = checked(`rate-choice-${dim}`);
      const strength = Number(checked(`rate-strength-${dim}`) || 0);
      const sa = Number(checked(`rate-score-a-${dim}`) || 0), sb = Number(checked(`rate-score-b-${dim}`) || 0);
      let text = choice ? CHOICE_TEXT[choice] || choice : "–";
      if (choice && (choice === "A" || choice === "B") && strength) text += "·" + strength;
      if (sa || sb) text += ` ${sa || "–"}/${sb || "–"}`;
      chip.classList.toggle("amx-done", !!choice);
      const value = chip.querySelector(".amx-chip-value");
      if (value && value.textContent !== text) value.textContent = text;
    });
    const hint = root.querySelector(".amx-hint");
    const chip = root.querySelector(`.amx-chip[data-dim="${DIMS[st.dim]}"]`);
    if (hint && chip) {
      const text = chip.dataset.hint ? `${chip.title.replace(/ \(key \d\)$/, "")}: ${chip.dataset.hint}` : "";
      if (hint.textContent !== text) hint.textContent = text;
    }
    const note = root.querySelector(".amx-note");
    if (note) {
      let text = "";
      if (st.prefix) text = `Score ${st.prefix} for ${DIMS[st.dim].replace(/_/g, " ")}: press 1–5 (0 clears)`;
      else if (now() < st.skipUntil) text = "Press S again to skip this pair (it is not served again) · Esc: keep it";
      else if (now() < st.noteUntil) text = st.note;
      if (note.textContent !== text) note.textContent = text;
    }
  }

  // -- the form (Gradio radios and buttons) -------------------------------------------------------
  function pick(id, value) {
    const input = document.querySelector(`#${id} input[value="${value}"]`);
    if (input && !input.checked) input.click();
    return !!input;
  }

  function click(id) {
    const el = document.getElementById(id);
    const target = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (target && !target.disabled) { target.click(); return true; }
    return false;
  }

  function setDim(n) { st.dim = clamp(n, 0, DIMS.length - 1); st.prefix = null; paintStrip(); }

  function choose(choice) {
    const dim = DIMS[st.dim];
    const before = checked(`rate-choice-${dim}`);
    if (before === choice && (choice === "A" || choice === "B")) { // again: stronger, 1 → 2 → 3 → none
      const s = Number(checked(`rate-strength-${dim}`) || 0);
      pick(`rate-strength-${dim}`, String((s + 1) % 4));
    } else {
      pick(`rate-choice-${dim}`, choice);
    }
    setTimeout(paintStrip, 30);
  }

  function score(clip, digit) {
    pick(`rate-score-${clip.toLowerCase()}-${DIMS[st.dim]}`, String(digit));
    setTimeout(paintStrip, 30);
  }

  function cycle(id, delta) {
    const inputs = Array.from(document.querySelectorAll(`#${id} input[type=radio]`));
    if (!inputs.length) return;
    const at = inputs.findIndex((i) => i.checked);
    const next = inputs[((at < 0 ? (delta > 0 ? -1 : 0) : at) + delta + inputs.length) % inputs.length];
    next.click();
    const label = next.closest("label");
    say(`${id === "rate-mark-kind" ? "Kind" : "Intent"}: ${label ? label.textContent.trim() : next.value}`);
  }

  function toggleRubric() {
    const acc = document.getElementById("rate-rubric");
    const button = acc && (acc.querySelector("button.label-wrap") || acc.querySelector("button"));
    if (button) button.click();
  }

  // -- keyboard ----------------------------------------------------------------------------------
  function typing(el) {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    const tag = el.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag !== "INPUT") return false;
    return !["radio", "checkbox", "range", "button", "submit", "reset"].includes((el.type || "text").toLowerCase());
  }

  function revealShown() { return shown(document.getElementById("rate-reveal")); }

  function onKey(e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (!shown(st.root) || !st.a) return;
    const target = e.target instanceof Element ? e.target : document.activeElement;
    if (typing(target) || typing(document.activeElement)) return;
    const key = e.key;
    const lower = key.length === 1 ? key.toLowerCase() : key;
    const focusOnButton = target && !(st.root.contains(target)) &&
      (target.tagName === "BUTTON" || (target.tagName === "INPUT" && target.type === "checkbox"));
    st.lastInput = now();
    let handled = true;

    if (st.prefix && /^[0-5]$/.test(key)) { score(st.prefix, Number(key)); st.prefix = null; }
    else if (key === "Escape") {
      st.prefix = null; st.skipUntil = 0;
      if (revealShown()) { st.reveal.hold = true; paintCountdown(); }
      handled = false; // let Gradio close its own popups too
    }
    else if (key === " " || key === "Spacebar") { if (focusOnButton) handled = false; else toggle(); }
    else if (key === "ArrowRight") step(e.shiftKey ? 10 : 1);
    else if (key === "ArrowLeft") step(e.shiftKey ? -10 : -1);
    else if (key === "PageDown") step(10);
    else if (key === "PageUp") step(-10);
    else if (key === "Home") step(-st.frames);
    else if (key === "End") step(st.frames);
    else if (key === "ArrowDown") setDim(st.dim + 1);
    else if (key === "ArrowUp") setDim(st.dim - 1);
    else if (key === "Enter") {
      if (focusOnButton) handled = false;
      else if (revealShown()) { st.reveal.hold = true; click("rate-next"); }
      else click("rate-submit");
    }
    else if (/^[1-5]$/.test(key)) setDim(Number(key) - 1);
    else if (key === "," || key === "<") { st.prefix = "A"; st.prefixUntil = now() + 4000; }
    else if (key === "." || key === ">") { st.prefix = "B"; st.prefixUntil = now() + 4000; }
    else if (e.shiftKey && (lower === "a" || lower === "b")) { pick("rate-mark-clip", lower.toUpperCase()); say(`Marks go on clip ${lower.toUpperCase()}`); }
    else if (lower in CHOICE_KEYS) choose(CHOICE_KEYS[lower]);
    else if (lower === "f") flip();
    else if (lower === "l") setLoop(!st.loop);
    else if (lower === "r") { cycleRate(); say(`Speed ${st.rate}×`); }
    else if (lower === "i") { click("rate-mark-in"); say(`Mark in at frame ${current() + 1}`); }
    else if (lower === "o") { click("rate-mark-out"); say(`Mark out at frame ${current() + 1}`); }
    else if (lower === "m") click("rate-add-mark");
    else if (lower === "k") cycle("rate-mark-kind", e.shiftKey ? -1 : 1);
    else if (lower === "n") cycle("rate-mark-intent", 1);
    else if (key === "?" || lower === "h") toggleRubric();
    else if (lower === "s") {
      if (now() < st.skipUntil) { st.skipUntil = 0; click("rate-skip"); } else st.skipUntil = now() + 3000;
    }
    else handled = false;

    if (handled) { e.preventDefault(); e.stopPropagation(); }
    paint(); paintStrip();
  }

  // -- pointer -----------------------------------------------------------------------------------
  function onClick(e) {
    const t = e.target instanceof Element ? e.target : null;
    if (!t) return;
    st.lastInput = now();
    // A mouse click leaves focus on the button, and Enter would then press it again (a second
    // "Add mark") instead of submitting: give focus back to the page. Keyboard focus (Tab) stays.
    const label = t.closest("#rate-work label");
    const focused = t.closest("#rate-work button, #rate-reveal button") ||
      (label && label.querySelector("input[type=checkbox]"));
    if (focused && e.detail > 0 && !(st.root && st.root.contains(focused))) {
      setTimeout(() => focused.blur(), 0);
    }
    const row = t.closest("[id^='rate-row-']");
    if (row) { const n = DIMS.indexOf(row.id.slice("rate-row-".length)); if (n >= 0) { st.dim = n; setTimeout(paintStrip, 30); } }
    if (!st.root || !st.root.contains(t)) return;
    const chip = t.closest(".amx-chip");
    if (chip) { setDim(Number(chip.dataset.n) - 1); return; }
    const btn = t.closest("button");
    if (!btn) return;
    if (btn.dataset.rate) setRate(Number(btn.dataset.rate));
    const act = btn.dataset.act;
    if (act === "play") toggle();
    else if (act === "back") step(-1);
    else if (act === "fwd") step(1);
    else if (act === "back10") step(-10);
    else if (act === "fwd10") step(10);
    else if (act === "flip") flip();
    btn.blur(); // Space and Enter stay shortcuts after a click on the transport
  }

  function onInput(e) {
    const t = e.target;
    if (!st.root || !(t instanceof Element) || !st.root.contains(t)) return;
    if (t.classList.contains("amx-scrub")) { if (st.playing) { st.a.pause(); st.b.pause(); st.playing = false; } seek(Number(t.value)); }
    if (t.classList.contains("amx-loop")) setLoop(t.checked);
  }

  // -- the loop: bind, keep B on A, count time and replays, reveal countdown ------------------------
  function paintCountdown() {
    const span = document.querySelector("#rate-reveal .amx-countdown");
    if (!span) return;
    const left = Math.ceil((st.reveal.at - now()) / 1000);
    const text = st.reveal.hold ? "(staying: Enter when you are ready)" : `(next pair in ${Math.max(left, 0)} s)`;
    if (span.textContent !== text) span.textContent = text;
  }

  function tick() {
    const t0 = now();
    const root = document.getElementById("amx-player");
    if (root !== st.root || keyOf(root) !== st.key) bind(root);
    if (st.a && st.root) {
      const visible = shown(st.root) && document.visibilityState === "visible";
      const dt = Math.min(t0 - (st.lastTick || t0), 1000) / 1000;
      if (visible && (st.playing || t0 - st.lastInput < IDLE_MS)) st.elapsed += dt;
      if (st.playing) {
        const a = st.a, b = st.b, dur = st.frames / st.fps;
        if (a.currentTime + 0.5 * dur < st.lastT) { st.replays += 1; b.currentTime = a.currentTime; st.lastSync = t0; }
        else if (Math.abs(a.currentTime - b.currentTime) > 0.6 / st.fps && t0 - st.lastSync > 250) {
          b.currentTime = a.currentTime; st.lastSync = t0;
        }
        if (b.paused && !a.paused) { const p = b.play(); if (p && p.catch) p.catch(() => {}); }
        st.lastT = a.currentTime;
        st.frame = frameOf(a.currentTime);
        paint();
      }
      if (st.prefix && t0 > st.prefixUntil) st.prefix = null;
      if (t0 - st.lastStrip > 200) { st.lastStrip = t0; paintStrip(); }
    }
    if (revealShown()) {
      if (!st.reveal.shown) {
        st.reveal = { shown: true, at: t0 + REVEAL_SECONDS * 1000, hold: false };
        const box = document.getElementById("rate-reveal");
        const r = box.getBoundingClientRect();
        if (r.top < 0 || r.bottom > window.innerHeight) box.scrollIntoView({ block: "nearest" });
      }
      paintCountdown();
      if (!st.reveal.hold && t0 >= st.reveal.at) { st.reveal.hold = true; click("rate-next"); }
    } else if (st.reveal.shown) {
      st.reveal.shown = false;
    }
    st.lastTick = t0;
    requestAnimationFrame(tick);
  }

  document.addEventListener("keydown", onKey, true);
  document.addEventListener("click", onClick, true);
  document.addEventListener("input", onInput, true);
  document.addEventListener("pointerdown", () => { st.lastInput = now(); }, true);

  window.amxRate = {
    /** Current frame, 0-based (the counter shows it + 1). */
    frame: () => current(),
    /** Running totals for this pair since the page loaded it; the server takes the difference. */
    telemetry: () => JSON.stringify({ aid: st.aid, token: st.token, elapsed: Math.round(st.elapsed * 100) / 100,
                                      replays: st.replays }),
    state: () => ({ frame: current(), frames: st.frames, playing: st.playing, rate: st.rate, loop: st.loop,
                    flipped: st.flipped, dim: st.dim, replays: st.replays, elapsed: st.elapsed, aid: st.aid }),
    seek, step, play, pause, flip, setRate, setLoop,
  };
  requestAnimationFrame(tick);
})();
