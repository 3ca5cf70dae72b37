// fleetmon's dashboard script. Pages work without it; it signs in and creates orgs through the
// JSON API (so errors show in place), and keeps live regions current. No inline code anywhere:
// the Content-Security-Policy allows only this file.
"use strict";

(function () {
  function cookie(name) {
    const prefix = name + "=";
    for (const part of document.cookie.split(";")) {
      const trimmed = part.trim();
      if (trimmed.startsWith(prefix)) return trimmed.slice(prefix.length);
    }
    return "";
  }

  // "in 15 minutes" / "in 40 seconds", from a Retry-After in seconds.
  function wait(seconds) {
    const s = Math.max(1, parseInt(seconds, 10) || 0);
    if (s < 60) return s === 1 ? "1 second" : s + " seconds";
    const m = Math.ceil(s / 60);
    return m === 1 ? "1 minute" : m + " minutes";
  }

  // The page's own texts for each outcome live on the message element (data-*), so the script
  // and the server-rendered fallback say the same things.
  function say(box, key, retryAfter) {
    const text = box.dataset[key] || box.dataset.failed || "Something went wrong.";
    box.textContent = text.replace("{wait}", wait(retryAfter));
  }

  function busy(form, on) {
    for (const button of form.querySelectorAll("button")) button.disabled = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  // A submission starts: the form waits, its message box empties. Returns the box.
  function begin(form) {
    const box = document.getElementById(form.dataset.messages);
    box.textContent = "";
    box.className = "notice error";
    busy(form, true);
    return box;
  }

  async function postJson(url, body, csrf) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (csrf) headers["X-CSRF-Token"] = cookie("fm_csrf");
    return fetch(url, { method: "POST", headers, body: JSON.stringify(body), credentials: "same-origin" });
  }

  function outcomeKey(status) {
    switch (status) {
      case 401: return "invalidCredentials";
      case 429: return "tooMany";
      case 403: return "refused";
      case 404: return "off";
      case 502: case 503: return "unavailable";
      default: return "failed";
    }
  }

  // Sign-in forms: JSON to the sign-in endpoint; the form's own action is the no-script path.
  for (const form of document.querySelectorAll("form[data-sign-in]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = begin(form);
      try {
        const response = await postJson(form.dataset.signIn, {
          email: form.elements.email.value,
          password: form.elements.password.value,
        }, false);
        if (response.ok) {
          window.location.assign(form.elements.return_to.value || "/");
          return;
        }
        say(box, outcomeKey(response.status), response.headers.get("Retry-After"));
        form.elements.password.select();
      } catch (_) {
        say(box, "unreachable");
      }
      busy(form, false);
    });
  }

  // Creating an org: JSON to the API with the CSRF header, then to the new org.
  for (const form of document.querySelectorAll("form[data-create-org]")) {
    const name = form.elements.name;
    const slug = form.elements.slug;
    let slugEdited = slug.value !== "";
    slug.addEventListener("input", () => { slugEdited = slug.value !== ""; });
    name.addEventListener("input", () => {
      if (slugEdited) return;
      slug.value = name.value.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-")
        .replace(/^-+|-+$/g, "").slice(0, 63);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = begin(form);
      try {
        const response = await postJson("/api/v1/orgs", { slug: slug.value, name: name.value || slug.value }, true);
        if (response.status === 201) {
          const created = await response.json();
          window.location.assign("/orgs/" + encodeURIComponent(created.org.slug));
          return;
        }
        if (response.status === 401) {
          window.location.assign("/sign-in?ended=1&return_to=" + encodeURIComponent(window.location.pathname));
          return;
        }
        const body = await response.json().catch(() => null);
        const code = body && body.error ? body.error.code : "";
        if (code === "slug_taken") say(box, "slugTaken");
        else if (code === "invalid_org") box.textContent = body.error.message;
        else say(box, "failed");
      } catch (_) {
        say(box, "unreachable");
      }
      busy(form, false);
    });
  }

  // Copy buttons (`data-copy` names the element whose text they copy): shown only where the
  // script runs, since without it there is nothing they could do.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    const label = button.textContent;
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(source.textContent);
        button.textContent = "Copied";
      } catch (_) {
        // No permission: select it for the keyboard's copy instead.
        window.getSelection().selectAllChildren(source);
        button.textContent = "Select and copy";
      }
      setTimeout(() => { button.textContent = label; }, 4000);
    });
  }

  // Range forms (`select[data-range]`): a preset range empties From and To, which only the
  // custom range reads — without the script, the page says to choose one or the other.
  for (const select of document.querySelectorAll("select[data-range]")) {
    select.addEventListener("change", () => {
      if (select.value === "custom") return;
      for (const name of ["since", "until"]) {
        const field = select.form.elements[name];
        if (field) field.value = "";
      }
    });
  }

  // Live regions. `data-live` names the view (overview, jobs, machine). Where the page names the
  // org's stream (data-stream) and the browser has EventSource, the view follows its Server-Sent
  // Events: each view patches what it can in place, and re-reads the page (swapping the region
  // in) for what it cannot — a row it does not show yet, one removed, a `resync`. Otherwise —
  // and when the stream is refused — it re-reads the page every few seconds while visible. A
  // page that now answers with the sign-in form means the session ended: go there.
  const live = document.querySelector("[data-live]");
  if (live) {
    const stamp = document.getElementById("updated");
    // The same words as the server's: "as of 14:02:07 UTC".
    function stamped() {
      if (stamp) stamp.textContent = "as of " + new Date().toISOString().slice(11, 19) + " UTC";
    }

    // The ids of the job rows shown, so that rows a re-read brings can be marked new.
    function jobRows() {
      return Array.from(live.querySelectorAll("tr[data-job]"));
    }

    // Re-reads the page; a call while one is fetching makes it run once more afterwards (a call
    // before the fetch starts is served by it). At most one a second: on a busy fleet the
    // stream's events must not each become a page read.
    const MIN_GAP_MS = 1000;
    let reading = null;
    let fetching = false;
    let again = false;
    let lastRead = 0;
    async function reread() {
      if (reading) { if (fetching) again = true; return reading; }
      reading = (async () => {
        const wait = lastRead + MIN_GAP_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        fetching = true;
        lastRead = Date.now();
        try {
          const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
          const url = new URL(response.url);
          if (url.pathname === "/sign-in") { window.location.assign(url.href); return false; }
          if (!response.ok) return false;
          const page = new DOMParser().parseFromString(await response.text(), "text/html");
          const fresh = page.querySelector("[data-live]");
          if (!fresh) return false;
          const shown = new Set(jobRows().map((row) => row.dataset.job));
          live.replaceChildren(...Array.from(fresh.childNodes, (node) => document.importNode(node, true)));
          // New rows stand out for a moment (not on the first read of an empty page).
          if (shown.size > 0) for (const row of jobRows()) if (!shown.has(row.dataset.job)) row.classList.add("fresh");
          stamped();
          return true;
        } catch (_) {
          // Offline for a moment: keep showing what we have and try again later.
          return false;
        } finally {
          reading = null;
          fetching = false;
          if (again) { again = false; reread(); }
        }
      })();
      return reading;
    }

    let polling = null;
    function poll() {
      if (polling) return;
      const every = Math.max(2, parseInt(live.dataset.refresh, 10) || 10) * 1000;
      polling = setInterval(() => { if (!document.hidden) reread(); }, every);
      document.addEventListener("visibilitychange", () => { if (!document.hidden && polling) reread(); });
    }

    // What each view does with the stream's events; the others are not its business.
    const views = {
      overview: { overview, machine, worker },
      jobs: { job: newestJob },
      machine: { machine: thisMachine, worker: workerHere },
    };
    const handlers = views[live.dataset.live] || {};

    if (live.dataset.stream && typeof EventSource === "function") follow(live.dataset.stream);
    else poll();

    function follow(url) {
      const source = new EventSource(url, { withCredentials: true });
      let opened = false;
      const on = (kind, apply) => source.addEventListener(kind, (event) => {
        try { apply(JSON.parse(event.data)); } catch (_) { reread(); return; }
        stamped();
      });
      // `data-streaming` says the page follows the stream (the "live" mark beside the time).
      on("ready", () => { opened = true; live.dataset.streaming = ""; });
      on("resync", () => reread());
      for (const [kind, apply] of Object.entries(handlers)) on(kind, apply);
      source.addEventListener("error", async () => {
        if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
        delete live.dataset.streaming;
        // Refused (the session's access token expired, or no stream here): poll instead. A
        // stream that had worked is tried again once a re-read renewed the session.
        if (opened && await reread()) { follow(url); return; }
        poll();
      });
    }

    function setText(selector, text) {
      const element = live.querySelector(selector);
      if (element) element.textContent = text;
    }

    // The summary's and the liveness filter's figures of one kind (`data-count`).
    function count(key) {
      const element = live.querySelector(`[data-count="${key}"]`);
      return element ? parseInt(element.textContent, 10) : null;
    }
    function setCount(key, value) {
      for (const element of live.querySelectorAll(`[data-count="${key}"]`)) element.textContent = String(value);
    }
    function bump(key, delta) {
      const now = count(key);
      if (now !== null) setCount(key, now + delta);
    }

    // As the server says it: "just now", "42 s ago", "10 min ago", "3 h ago", "3 days ago".
    function ago(iso) {
      const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
      if (s < 5) return "just now";
      if (s < 120) return s + " s ago";
      if (s < 7200) return Math.floor(s / 60) + " min ago";
      if (s < 172800) return Math.floor(s / 3600) + " h ago";
      return Math.floor(s / 86400) + " days ago";
    }

    // A badge: `<span class="badge online">online</span>`.
    function badge(word) {
      const span = document.createElement("span");
      span.className = "badge " + word;
      span.textContent = word;
      return span;
    }

    // A machine's GPU list (`li.gpu` items under `container`) set to the event's values in
    // place; false when the list has another shape (the caller re-reads).
    function patchGpus(container, gpus) {
      const list = Array.isArray(gpus) ? gpus : [];
      const items = container.querySelectorAll("li.gpu");
      if (items.length !== list.length) return false;
      for (const [i, gpu] of list.entries()) {
        const util = items[i].querySelector('[data-bar="utilization"]');
        const memory = items[i].querySelector('[data-bar="memory"]');
        const hasMemory = gpu.memory_used_mb != null && gpu.memory_total_mb != null;
        if (Boolean(util) !== (gpu.utilization_pct != null) || Boolean(memory) !== hasMemory) return false;
        const temperature = items[i].querySelector(".muted");
        if (temperature) temperature.textContent = gpu.temperature_c == null ? "" : Math.round(gpu.temperature_c) + " °C";
        if (util) {
          util.querySelector("meter").value = gpu.utilization_pct;
          util.querySelector("meter + span").textContent = Math.round(gpu.utilization_pct) + "%";
        }
        if (memory) {
          memory.querySelector("meter").value = gpu.memory_used_mb;
          memory.querySelector("meter + span").textContent =
            (gpu.memory_used_mb / 1024).toFixed(1) + " / " + (gpu.memory_total_mb / 1024).toFixed(1) + " GB";
        }
      }
      return true;
    }

    // `overview`: the stat cards, the fleet summary and the recent failures.
    function overview(data) {
      const jobs = data.jobs;
      const cards = live.querySelector(".stats");
      const any = jobs.pending + jobs.active + jobs.completed + jobs.failed + jobs.cancelled > 0;
      if (!cards) { if (any || data.machines.total > 0) reread(); return; }
      for (const key of ["active", "pending", "completed"]) setText(`[data-stat="${key}"] strong`, String(jobs[key]));
      setText('[data-stat="failed"] strong a', String(jobs.failed));
      const failed = live.querySelector('[data-stat="failed"]');
      if (failed) failed.classList.toggle("bad", jobs.failed > 0);
      setText('[data-stat="success-rate"] strong',
        jobs.success_rate == null ? "—" : (jobs.success_rate * 100).toFixed(1) + "%");
      // Machines age from online to stale to offline without any write announcing it: counts
      // that differ from the grid's mean the grid is behind. (A grid of the first machines
      // only counts those.)
      const liveness = data.machines.by_liveness;
      const behind = !("truncated" in live.dataset) && (count("machines") !== data.machines.total || count("workers") !== data.workers.total
        || ["online", "stale", "offline"].some((state) => count(state) !== liveness[state]));
      const shown = Array.from(live.querySelectorAll(".recent-failures [data-job]"), (li) => li.dataset.job);
      const failures = data.recent_failures.map((failure) => failure.id);
      if (behind || shown.join("\n") !== failures.join("\n")) reread();
    }

    // Whether the grid would show a new machine of this liveness.
    function shows(liveness) {
      if ("truncated" in live.dataset) return false;
      return !live.dataset.liveness || live.dataset.liveness === liveness;
    }

    function card(id) {
      return live.querySelector(`li.machine[data-machine="${CSS.escape(id)}"]`);
    }

    // `machine`: its liveness, reported status and GPU meters, in place.
    function machine(data) {
      const found = card(data.id);
      if (!found) {
        // New to this view, unless the view does not show it: a removed one, one of another
        // liveness than the view's filter, one past a grid of the first machines only.
        if (!data.removed && shows(data.liveness)) reread();
        return;
      }
      if (data.removed || !shows(data.liveness)) { reread(); return; }
      if (!found.classList.contains(data.liveness)) {
        const was = ["online", "stale", "offline"].find((state) => found.classList.contains(state));
        found.classList.remove("online", "stale", "offline");
        found.classList.add(data.liveness);
        found.querySelector("header .badge").replaceWith(badge(data.liveness));
        if (was) bump(was, -1);
        bump(data.liveness, 1);
      }
      const status = found.querySelector('[data-fact="status"]');
      if (status && data.reported_status) status.textContent = data.reported_status;
      else if (Boolean(status) !== Boolean(data.reported_status)) { reread(); return; }
      const seen = found.querySelector('[data-fact="seen"]');
      if (seen) seen.textContent = ago(data.last_seen_at);
      if (!patchGpus(found, data.gpus)) reread();
    }

    // `worker`: its status, liveness and current job, in place.
    function worker(data) {
      const found = live.querySelector(`li.worker[data-worker="${CSS.escape(data.id)}"]`);
      const home = found && found.closest("li.machine");
      const moved = found && (home ? home.dataset.machine : null) !== (data.machine_id || null);
      if (!found || data.removed || moved) {
        // A new worker matters on a machine the grid shows, or on none when the grid is all.
        const where = data.machine_id ? card(data.machine_id) : !live.dataset.liveness;
        if (found || (!data.removed && where)) reread();
        return;
      }
      const badges = found.querySelector("[data-badges]");
      // The summary's busy workers: busy and not offline, as the server counts them.
      const busy = (status, liveness) => status === "busy" && liveness !== "offline";
      const before = Array.from(badges.querySelectorAll(".badge"), (b) => b.textContent);
      const wasBusy = busy(before[0], before[1] || "online");
      const status = data.status || "unknown";
      if (wasBusy !== busy(status, data.liveness)) bump("busy", wasBusy ? -1 : 1);
      const words = data.liveness === "online" ? [badge(status)] : [badge(status), " ", badge(data.liveness)];
      badges.replaceChildren(...words);
      let job = found.querySelector(".job");
      if (!data.current_job_id) { if (job) job.remove(); return; }
      if (!job) {
        job = document.createElement("div");
        job.className = "job";
        found.querySelector(".line").after(job);
      }
      const link = document.createElement("a");
      link.className = "mono";
      link.href = live.dataset.jobs + "/" + encodeURIComponent(data.current_job_id);
      link.textContent = data.current_job_id;
      job.replaceChildren("Job ", link);
    }

    // `job` on the newest jobs page: a job it shows changed, or one it does not show may be new
    // to it (the server applies the filters): re-read. Only a job older than every row of a full
    // page (one with an "Older" link) cannot be on it.
    function newestJob(data) {
      const rows = jobRows();
      if (!rows.some((row) => row.dataset.job === data.id) && !data.removed) {
        const oldest = rows.length ? rows[rows.length - 1].querySelector("time") : null;
        const full = live.querySelector('a[rel="next"]');
        if (full && oldest && Date.parse(data.created_at) < Date.parse(oldest.dateTime)) return;
      }
      reread();
    }

    // `machine` on a machine's page: its GPU meters and "last heard from" in place; its removal
    // said on the page; anything else about it (liveness, reported status, another GPU list)
    // re-reads the page.
    function thisMachine(data) {
      if (data.id !== live.dataset.machineId) return;
      if (data.removed) {
        // Its page is gone (a re-read would be the 404): say so where it was.
        if (!live.querySelector(".notice.removed")) {
          const note = document.createElement("p");
          note.className = "notice info removed";
          note.setAttribute("role", "status");
          note.textContent = live.dataset.removedText;
          live.prepend(note);
        }
        return;
      }
      const state = live.querySelector('[data-fact="state"]');
      const same = state && state.dataset.liveness === data.liveness
        && (state.dataset.status || null) === (data.reported_status || null);
      if (!same || !patchGpus(live, data.gpus)) { reread(); return; }
      setText('[data-fact="seen"]', ago(data.last_seen_at));
      const time = live.querySelector('[data-fact="seen-at"] time');
      if (time) {
        time.dateTime = data.last_seen_at;
        // As the server writes it: "2026-03-01 14:02:07.250 UTC".
        time.textContent = new Date(data.last_seen_at).toISOString().replace("T", " ").replace("Z", " UTC");
      }
    }

    // `worker` on a machine's page: one of its workers (or one that has moved here or away)
    // changed: re-read its workers table with the rest of the page.
    function workerHere(data) {
      if (live.querySelector(".notice.removed")) return; // with the machine
      const shown = live.querySelector(`tr[data-worker="${CSS.escape(data.id)}"]`);
      if (shown || data.machine_id === live.dataset.machineId) reread();
    }
  }
})();
