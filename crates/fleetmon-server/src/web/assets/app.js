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

  // Live regions: re-read the page every few seconds while it is visible and swap the region in.
  // (Server-Sent Events will replace this polling.) A page that now answers with the sign-in
  // form means the session ended: go there.
  const live = document.querySelector("[data-live]");
  if (live) {
    const every = Math.max(2, parseInt(live.dataset.refresh, 10) || 10) * 1000;
    const stamp = document.getElementById("updated");
    async function update() {
      if (document.hidden) return;
      try {
        const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
        const url = new URL(response.url);
        if (url.pathname === "/sign-in") { window.location.assign(url.href); return; }
        if (!response.ok) return;
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.querySelector("[data-live]");
        if (fresh) {
          live.replaceChildren(...Array.from(fresh.childNodes, (node) => document.importNode(node, true)));
          // The same words as the server's: "as of 14:02:07 UTC".
          if (stamp) stamp.textContent = "as of " + new Date().toISOString().slice(11, 19) + " UTC";
        }
      } catch (_) {
        // Offline for a moment: keep showing what we have and try again at the next tick.
      }
    }
    setInterval(update, every);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) update(); });
  }
})();
