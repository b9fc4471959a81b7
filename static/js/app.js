// Progressive touches only: every page works without this file.
(function () {
  "use strict";
  const tracerail = (window.tracerail = window.tracerail || {});

  // A live refresh must never wipe what someone is typing: the case page only polls
  // while no field of its forms differs from what the server rendered.
  tracerail.dirty = function () {
    const fields = document.querySelectorAll("#case textarea, #case input[type=text], #case input[type=datetime-local], #case select");
    for (const field of fields) {
      if (field instanceof HTMLSelectElement) {
        for (const option of field.options) if (option.selected !== option.defaultSelected) return true;
      } else if (field.value !== field.defaultValue) return true;
    }
    if (tracerail.uploading && tracerail.uploading()) return true;
    return document.activeElement instanceof HTMLElement && !!document.activeElement.closest("#case form");
  };

  // One live region, outside anything htmx replaces: a region swapped in with its text is
  // often not read at all, so results are copied here instead.
  function announce(text) {
    const region = document.getElementById("announcer");
    text = (text || "").replace(/\s+/g, " ").trim();
    if (!region || !text) return;
    // Same words twice in a row (two identical refusals) must still be spoken.
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }
  tracerail.announce = announce;

  // Single-key shortcuts can be turned off (WCAG 2.1.4): speech input and stray keys
  // otherwise claim cases. The choice is per browser.
  const SHORTCUTS_KEY = "tracerail.shortcuts";
  let shortcutsChoice = null;  // where storage is refused, the choice lasts for this page
  function shortcutsOn() {
    try { shortcutsChoice = window.localStorage.getItem(SHORTCUTS_KEY) || shortcutsChoice; } catch (e) { /* kept below */ }
    return shortcutsChoice !== "off";
  }
  function showShortcuts() {
    const on = shortcutsOn();
    document.documentElement.classList.toggle("shortcuts-off", !on);
    const toggle = document.getElementById("shortcuts-toggle");
    if (toggle) {
      toggle.hidden = false;  // Without JS there are no shortcuts to turn off.
      toggle.textContent = "Keyboard shortcuts: " + (on ? "on" : "off");
    }
  }
  tracerail.shortcutsOn = shortcutsOn;
  showShortcuts();
  document.addEventListener("click", function (event) {
    if (!(event.target instanceof Element) || !event.target.closest("#shortcuts-toggle")) return;
    const on = !shortcutsOn();
    shortcutsChoice = on ? "on" : "off";
    try { window.localStorage.setItem(SHORTCUTS_KEY, shortcutsChoice); } catch (e) { /* this page only */ }
    showShortcuts();
    announce("Keyboard shortcuts " + (on ? "on" : "off") + ".");
  });

  // --- Colour scheme and list density ----------------------------------------------------
  // Chosen in the user menu, kept in this browser. The inline script at the top of base.html
  // applies them before the first paint; this only saves a change and applies it at once.
  const CHOICES = { theme: "tracerail.theme", density: "tracerail.density" };
  function applyChoice(name, value) {
    document.documentElement.dataset[name] = value;
    try {
      if (value) window.localStorage.setItem(CHOICES[name], value);
      else window.localStorage.removeItem(CHOICES[name]);
    } catch (e) { /* storage refused: this page only */ }
  }
  for (const name of Object.keys(CHOICES)) {
    const current = document.documentElement.dataset[name] || "";
    for (const input of document.querySelectorAll("input[type=radio][name=" + name + "]")) {
      input.checked = input.value === current;
      input.closest("fieldset").hidden = false;  // without JS there is nothing to choose
    }
  }
  document.addEventListener("change", function (event) {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || input.type !== "radio" || !input.closest(".menu-panel")) return;
    if (!(input.name in CHOICES)) return;
    applyChoice(input.name, input.value);
    announce(input.closest("label").textContent.trim() + ".");
  });

  // --- Menus that fold on narrow screens ---------------------------------------------------
  // The main navigation and the list's filters are <details> left open for wide screens and
  // closed by an inline script before the first paint on narrow ones; a window that crosses
  // the breakpoint later gets the same treatment.
  const FOLDS = [[".nav-menu", "(max-width: 47.99em)"], [".filter-drawer", "(max-width: 1199.98px)"]];
  for (const [selector, query] of FOLDS) {
    const media = window.matchMedia(query);
    media.addEventListener("change", function () {
      const details = document.querySelector(selector);
      if (details) details.open = !media.matches;
    });
  }
  // The user menu (and the phone's menu) close on Escape and on a click elsewhere.
  function closeMenus(except) {
    for (const menu of document.querySelectorAll(".user-menu[open]")) if (menu !== except) menu.open = false;
    const nav = document.querySelector(".nav-menu[open]");
    if (nav && window.matchMedia(FOLDS[0][1]).matches && !nav.contains(except)) nav.open = false;
  }
  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    closeMenus(target && target.closest("details"));
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const open = document.querySelector(".user-menu[open]");
    if (open) { open.open = false; open.querySelector("summary").focus(); }
  });

  // --- Typing survives swaps -----------------------------------------------------------
  // Every action response and every refresh replaces #case whole, so anything typed into
  // any of its forms meanwhile would vanish. Before a swap, what the person changed is kept
  // by form action and field name; after it, it is put back into the same fields of the new
  // markup. Kept values that find no field (a degraded page has no forms) wait for the next
  // swap that brings the field back.
  const typed = new Map();
  const TEXTLIKE = /^(text|search|email|url|tel|number|date|datetime-local|time|month|week)$/;
  function fieldsIn(root) {
    return Array.from(root.querySelectorAll("textarea, input, select")).filter(function (field) {
      if (field.disabled || field.readOnly || !field.name || !field.closest("form")) return false;
      // Files chosen for a comment are kept too: a swap would otherwise drop them unseen.
      return field instanceof HTMLInputElement ? TEXTLIKE.test(field.type) || field.type === "checkbox" || field.type === "radio" || field.type === "file" : true;
    });
  }
  function keyOf(field) {
    const form = field.closest("form");
    const base = (form ? form.getAttribute("action") || "" : "") + "|" + field.name;
    return field.type === "checkbox" || field.type === "radio" ? base + "|" + field.value : base;
  }
  function formKey(form) { return (form.getAttribute("action") || "") + "|"; }
  function changed(field) {
    if (field instanceof HTMLSelectElement) {
      return Array.from(field.options).some(function (o) { return o.selected !== o.defaultSelected; });
    }
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field.type === "file") return !!field.files && field.files.length > 0;
    return field.value !== field.defaultValue;
  }
  function read(field) {
    if (field instanceof HTMLSelectElement) {
      return Array.from(field.selectedOptions).map(function (o) { return o.value; });
    }
    if (field.type === "file") return field.files;
    return field.type === "checkbox" || field.type === "radio" ? field.checked : field.value;
  }
  function write(field, value) {
    if (field instanceof HTMLSelectElement) {
      for (const option of field.options) option.selected = value.includes(option.value);
    } else if (field.type === "checkbox" || field.type === "radio") field.checked = value;
    else if (field.type === "file") field.files = value;
    else field.value = value;
  }

  // What one swap needs to remember between htmx:beforeSwap and htmx:afterSwap.
  let swapping = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    const detail = event.detail;
    const target = detail.target;
    if (!(target instanceof Element) || !detail.shouldSwap) return;
    rememberSwap(target, detail.requestConfig);
  });
  // What is typed, and where the focus and caret are, in `target` before it is replaced (by a
  // request's answer, or by a pushed case): restored into the new content after the swap.
  function rememberSwap(target, requestConfig) {
    const elt = requestConfig && requestConfig.elt;
    const submitted = requestConfig && requestConfig.verb === "post" && elt instanceof Element
      ? elt.closest("form") : null;
    const active = document.activeElement;
    let focus = null;
    for (const field of fieldsIn(target)) {
      if (changed(field)) typed.set(keyOf(field), read(field));
      if (field === active && (!submitted || field.form !== submitted)) {
        focus = { key: keyOf(field), start: null, end: null, scroll: field.scrollTop };
        try { focus.start = field.selectionStart; focus.end = field.selectionEnd; } catch (e) { /* no caret here */ }
      }
    }
    swapping = {
      id: target.id, target: target, submitted: submitted && formKey(submitted),
      focus: focus, version: target.getAttribute("data-version"), fromFilters: elt instanceof Element && elt.id === "filters",
      rows: rowSignatures(target), degraded: target.classList.contains("degraded"),
    };
  }

  function restoreTyping(root, state) {
    const fields = fieldsIn(root);
    if (state.submitted) {
      const form = fields.map(function (f) { return f.closest("form"); })
        .find(function (f) { return formKey(f) === state.submitted; });
      // Applied: what was typed there is now on the case; the server cleared the form.
      const applied = !!root.querySelector(".flash.ok") && !(form && form.matches(".invalid, :has(.errorlist)"));
      if (applied) {
        for (const key of Array.from(typed.keys())) if (key.startsWith(state.submitted)) typed.delete(key);
      }
    }
    for (const field of fields) {
      const key = keyOf(field);
      if (typed.has(key)) { write(field, typed.get(key)); typed.delete(key); }
    }
    if (!state.focus) return false;
    const field = fields.find(function (f) { return keyOf(f) === state.focus.key; });
    if (!field) return false;
    field.focus({ preventScroll: true });
    if (state.focus.start !== null) {
      try { field.setSelectionRange(state.focus.start, state.focus.end); } catch (e) { /* no caret here */ }
    }
    field.scrollTop = state.focus.scroll;
    return true;
  }

  // After an action, focus goes to its result (the refused field, else the message), unless
  // the person has moved on and is typing elsewhere: then the result is only announced.
  function showResult(root, state, typing) {
    let result = null;
    const form = state.submitted && Array.from(root.querySelectorAll("form"))
      .find(function (f) { return formKey(f) === state.submitted; });
    if (form && form.querySelector(".errorlist")) {
      result = form.querySelector("[aria-invalid=true]") || form.querySelector(".errorlist");
      const label = form.querySelector("button[type=submit]");
      announce((label ? label.textContent + ": " : "") + Array.from(form.querySelectorAll(".errorlist"))
        .map(function (list) { return list.textContent; }).join(" "));
    } else {
      result = root.querySelector(".flash") || root.querySelector(".error-page h1") || root;
      announce(result.textContent);
    }
    if (typing || !result) return;
    if (!result.matches("input, select, textarea, button, a[href]")) result.setAttribute("tabindex", "-1");
    result.focus();
  }

  // List refreshes are announced only when rows came, went or changed; the relative times
  // ("3 min ago") change every refresh and are not news.
  function rowSignatures(root) {
    const rows = new Map();
    for (const row of root.querySelectorAll("tr.case-row")) {
      const copy = row.cloneNode(true);
      copy.querySelectorAll("time").forEach(function (t) { t.remove(); });
      rows.set(row.id, copy.textContent.replace(/\s+/g, " ").trim());
    }
    return rows;
  }
  function describeList(root, state) {
    if (state.fromFilters) {
      const empty = root.querySelector(".empty");
      if (empty) return empty.textContent;
      const n = root.querySelectorAll("tr.case-row").length;
      return n + (n === 1 ? " case" : " cases") + (root.querySelector(".next-page") ? " on this page, more on the next." : ".");
    }
    const after = rowSignatures(root);
    let added = 0, gone = 0, changedRows = 0;
    for (const [id, text] of after) {
      if (!state.rows.has(id)) added++;
      else if (state.rows.get(id) !== text) changedRows++;
    }
    for (const id of state.rows.keys()) if (!after.has(id)) gone++;
    const parts = [];
    if (added) parts.push(added + " new");
    if (changedRows) parts.push(changedRows + " changed");
    if (gone) parts.push(gone + " no longer listed");
    return parts.length ? "Case list updated: " + parts.join(", ") + "." : "";
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    const state = swapping;
    if (!state) return;
    const root = state.target.isConnected ? state.target
      : (state.id && document.getElementById(state.id)) || (event.target instanceof Element ? event.target : null);
    if (!root || !root.isConnected) return;
    swapping = null;  // once per swap, though htmx fires this for out-of-band parts too
    if (state.pushed) fillPushed(root, state.pushed);
    const typing = restoreTyping(root, state);
    if (state.submitted) showResult(root, state, typing);
    else if (root.id === "results" || root.id === "live") announce(describeList(root, state));
    else if (root.id === "case" && root.classList.contains("degraded")) {
      if (!state.degraded) announce((root.querySelector(".flash") || root).textContent);
    } else if (root.id === "case" && state.degraded) announce("Live details are back.");
    else if (root.id === "case" && root.getAttribute("data-version") !== state.version) {
      const last = Array.from(root.querySelectorAll("p")).find(function (p) { return /^\s*Last change by/.test(p.textContent); });
      announce("The case was updated" + (last ? ": " + last.textContent.split("·")[0].trim().replace(/^Last change/, "last change") : "."));
    } else if (root.id === "panels" && state.fromFilters) {
      const tiles = root.querySelector(".tiles");
      announce(tiles ? "Dashboard: " + Array.from(tiles.children).map(function (t) { return t.textContent; }).join(", ") : root.textContent);
    }
  });

  // --- Files: dropped onto the case page, or chosen, uploaded with a progress bar -----------
  // The upload form (#case form[data-upload]) posts as a plain multipart form without this
  // file. Here it goes by XMLHttpRequest, whose upload events drive the bar; the case is then
  // read again like after a push. #case may be replaced meanwhile (a push), so what the
  // upload shows is kept here and drawn into whichever form is on the page.
  let upload = null;  // { percent, text, error } of the upload in flight or just ended
  function uploadForm() { return document.querySelector("#case form[data-upload]"); }
  function showUpload() {
    const form = uploadForm();
    if (!form || !upload) return;
    const bar = form.querySelector(".upload-progress");
    const status = form.querySelector(".upload-status");
    const error = form.querySelector(".upload-error");
    bar.hidden = upload.percent === null;
    if (upload.percent !== null) bar.value = upload.percent;
    if (status.textContent !== upload.text) status.textContent = upload.text;
    error.hidden = !upload.error;
    error.textContent = upload.error || "";
  }
  function serverMessage(xhr) {
    const type = xhr.getResponseHeader("Content-Type") || "";
    let text = xhr.responseText || "";
    if (type.indexOf("json") >= 0) {
      try { const data = JSON.parse(text); text = data.error || data.message || data.detail || text; } catch (e) { /* as text */ }
    } else if (type.indexOf("html") >= 0) {
      const doc = new DOMParser().parseFromString(text, "text/html");
      const said = doc.querySelector("#case .flash.warn:not([hidden]), .errorlist, h1");
      text = said ? said.textContent : doc.body ? doc.body.textContent : "";
    }
    text = text.replace(/\s+/g, " ").trim().slice(0, 300);
    return text || ("The upload failed (" + xhr.status + ").");
  }
  function sendFiles(form, files) {
    if (!files.length || (upload && upload.busy)) return;
    const data = new FormData(form);
    const input = form.querySelector("input[type=file]");
    data.delete(input.name);
    for (const file of files) data.append(input.name, file, file.name);
    // Each upload is its own command: a key of its own, or it would count as a retry.
    const key = form.querySelector("input[type=hidden][name$='-key']");
    if (key) data.set(key.name, Date.now().toString(36) + Math.random().toString(36).slice(2));
    const names = files.length === 1 ? files[0].name : files.length + " files";
    upload = { busy: true, percent: 0, text: "Uploading " + names + "…", error: "" };
    showUpload();
    const xhr = new XMLHttpRequest();
    let said = 0;  // the quarters already spoken: the bar moves, the live region says less
    xhr.upload.addEventListener("progress", function (event) {
      if (!event.lengthComputable) return;
      upload.percent = Math.round(100 * event.loaded / event.total);
      const quarter = Math.floor(upload.percent / 25);
      if (quarter > said) { said = quarter; upload.text = "Uploading " + names + ": " + upload.percent + "%"; }
      showUpload();
    });
    xhr.addEventListener("load", function () {
      const ok = xhr.status >= 200 && xhr.status < 400;
      upload = { busy: false, percent: ok ? 100 : null, text: ok ? "Uploaded " + names + "." : "",
        error: ok ? "" : serverMessage(xhr) };
      showUpload();
      if (ok) document.dispatchEvent(new Event("visible-again"));  // the case, with its files
      else announce(upload.error);
    });
    xhr.addEventListener("error", function () {
      upload = { busy: false, percent: null, text: "", error: "The upload did not reach the server; try again." };
      showUpload();
      announce(upload.error);
    });
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json, text/html;q=0.9");
    const token = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (token) xhr.setRequestHeader("X-CSRFToken", token.value);
    xhr.send(data);
  }
  tracerail.uploading = function () { return !!(upload && upload.busy); };
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("form[data-upload]")) return;
    const input = form.querySelector("input[type=file]");
    if (!input || !input.files.length) return;
    event.preventDefault();
    sendFiles(form, Array.from(input.files));
    input.value = "";
  });
  function carriesFiles(event) {
    return !!event.dataTransfer && Array.from(event.dataTransfer.types || []).indexOf("Files") >= 0 && !!uploadForm();
  }
  document.addEventListener("dragover", function (event) {
    if (!carriesFiles(event)) return;
    event.preventDefault();  // allows the drop
    event.dataTransfer.dropEffect = "copy";
    document.documentElement.classList.add("dragging");
  });
  document.addEventListener("dragleave", function (event) {
    if (!event.relatedTarget) document.documentElement.classList.remove("dragging");
  });
  document.addEventListener("drop", function (event) {
    document.documentElement.classList.remove("dragging");
    if (!carriesFiles(event)) return;
    event.preventDefault();  // never navigate away to the dropped file
    // Dropped on the comment box: the files go with the comment; anywhere else: onto the case.
    const comment = event.target instanceof Element && event.target.closest("#case form.action-comment");
    const input = comment && comment.querySelector("input[type=file]");
    if (input) {
      input.files = event.dataTransfer.files;
      announce(input.files.length + (input.files.length === 1 ? " file" : " files") + " will go with the comment.");
      return;
    }
    sendFiles(uploadForm(), Array.from(event.dataTransfer.files));
  });
  document.addEventListener("htmx:afterSwap", showUpload);

  // The list does not refresh under someone's selection.
  tracerail.selecting = function () {
    return !!document.querySelector("input[name=case][form=bulk]:checked");
  };
  function updateSelectedCount() {
    const count = document.querySelectorAll("input[name=case][form=bulk]:checked").length;
    if (!count && missedPush) catchUp();
    const label = document.querySelector(".bulk-bar .selected-count");
    if (label) label.textContent = count ? count + " selected:" : "With selected:";
  }
  // Checkboxes: "select all on this page", and shift-click selects a range.
  let lastChecked = null;
  document.addEventListener("click", function (event) {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    if (box.id === "select-page") {
      document.querySelectorAll("input[name=case][form=bulk]").forEach(function (b) { b.checked = box.checked; });
    } else if (box.name === "case") {
      const boxes = Array.from(document.querySelectorAll("input[name=case][form=bulk]"));
      if (event.shiftKey && lastChecked && boxes.includes(lastChecked)) {
        const [a, b] = [boxes.indexOf(lastChecked), boxes.indexOf(box)].sort(function (x, y) { return x - y; });
        boxes.slice(a, b + 1).forEach(function (b2) { b2.checked = box.checked; });
      }
      lastChecked = box;
    } else return;
    updateSelectedCount();
  });

  // --- Server push (the htmx SSE extension, /events/) ---------------------------------
  // While a stream is open the page is told about changes, so the `every Ns` polls (the
  // fallback) are off: their hx-trigger filters ask tracerail.pushed().
  const streams = new Set();
  let missedPush = false;
  tracerail.pushed = function () {
    for (const source of streams) if (source.readyState === 1 /* OPEN */) return true;
    return false;
  };
  // `event: case` says the version the case is at ("" when the page must re-read whatever
  // it shows). A version the page shows already costs no request: a resuming stream
  // replays every change since the page's position, the one the page was rendered after too.
  tracerail.behind = function (message) {
    const version = message && message.data;
    const current = document.getElementById("case");
    if (!version || !current) return true;
    return parseInt(version, 10) > parseInt(current.getAttribute("data-version") || "0", 10);
  };
  function catchUp() {
    missedPush = false;
    document.dispatchEvent(new Event("visible-again"));
  }
  const sources = new Map();  // stream element -> its EventSource
  // The server ends a stream for good with `ended` (newer tabs took over) or `signed-out`:
  // this page stops listening and says so where typing is not disturbed (#stream-notice).
  const told = new WeakSet();
  function stopListening(source, text, href) {
    source.close();
    streams.delete(source);
    const notice = document.getElementById("stream-notice");
    if (!notice) return;
    notice.textContent = text + " ";
    if (href) {
      const link = document.createElement("a");
      link.href = href;
      link.textContent = "Sign in again";
      notice.appendChild(link);
    }
    notice.hidden = false;
  }
  // The nav bar's unread badge: read once as the page loads, then moved by the stream's
  // `inbox` events (one server-side check a second for every open stream).
  function showUnread(count) {
    const badge = document.getElementById("inbox-badge");
    if (!badge || isNaN(count)) return;
    badge.textContent = String(count);
    badge.hidden = count === 0;
  }
  // The mention picker: a chosen name goes into the comment as "@name ".
  document.addEventListener("change", function (event) {
    const picker = event.target;
    if (!picker || picker.id !== "mention-picker" || !picker.value) return;
    const body = document.querySelector("form.action-comment textarea");
    if (!body) return;
    body.value += (body.value && !/\s$/.test(body.value) ? " " : "") + "@" + picker.value.trim() + " ";
    picker.value = "";
    body.focus();
  });
  const inboxBadge = document.getElementById("inbox-badge");
  if (inboxBadge) {
    fetch(inboxBadge.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) showUnread(data.unread); })
      .catch(function () {});
  }
  document.addEventListener("htmx:sseOpen", function (event) {
    const source = event.detail.source;
    if (source && !told.has(source)) {
      told.add(source);
      source.addEventListener("ended", function (e) { stopListening(source, e.data); });
      source.addEventListener("inbox", function (e) { showUnread(parseInt(e.data, 10)); });
      source.addEventListener("signed-out", function (e) {
        stopListening(source, "You are signed out: this page no longer updates.", e.data);
      });
    }
    streams.add(event.detail.source);
    sources.set(event.target, event.detail.source);
  });
  // Resuming: every stream event carries the change log's position as its id. The browser's
  // own reconnect sends it back (Last-Event-ID); a stream the extension opens anew (after an
  // error, or a paused tab) says it as `last=`, so the server sends only what was missed, or
  // tells the page to re-read when it no longer holds that. The page's first stream starts
  // from the position the page was rendered at (in its sse-connect URL).
  const lastIds = new Map();  // stream URL without `last` -> the newest source for it
  function withoutLast(url) { return url.replace(/([?&])last=[^&]*(&|$)/, function (m, lead, tail) { return tail ? lead : ""; }); }
  if (window.htmx) {
    htmx.createEventSource = function (url) {
      const base = withoutLast(url);
      const previous = lastIds.get(base);
      const last = previous && previous.lastEventId;
      const target = last ? base + (base.indexOf("?") >= 0 ? "&" : "?") + "last=" + encodeURIComponent(last) : url;
      const source = new EventSource(target, { withCredentials: true });
      lastIds.set(base, source);
      return source;
    };
  }
  document.addEventListener("htmx:sseError", function (event) {
    const source = event.detail.source;
    if (source && source.readyState !== 1) streams.delete(source);
  });
  document.addEventListener("htmx:sseClose", function (event) { streams.delete(event.detail.source); });
  // A push the page could not take (hidden tab, ticked rows) is taken once it can.
  function deferred(event) {
    if (document.visibilityState !== "visible" || (event.type === "sse:list" && tracerail.selecting())) missedPush = true;
  }
  document.addEventListener("sse:list", deferred);
  document.addEventListener("sse:case", deferred);

  // Pushed results (the list's membership changed; rendered once on the server for every tab
  // showing this list) replace #results like a re-fetch would, announced the same way; a page
  // that cannot take them now (hidden tab, ticked rows) re-reads once it can.
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (!(event.target instanceof Element) || event.target.id !== "pushed-results") return;
    const results = document.getElementById("results");
    if (!results || document.visibilityState !== "visible" || tracerail.selecting()) {
      event.preventDefault();
      missedPush = true;
      return;
    }
    swapping = { id: "results", target: results, submitted: null, focus: null, version: null,
      fromFilters: false, rows: rowSignatures(results), degraded: false };
  });

  // A pushed case (rendered once on the server for every page of its kind) replaces #case
  // like a ?since= refresh would, typing, focus and caret kept. It is shared, so it carries
  // nothing of the person's own: its forms get this page's CSRF token, and the page keeps
  // its own macro form where the pushed case leaves its place (data-kept). A hidden tab
  // re-reads once it is visible; an older version than the page shows is dropped.
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (!(event.target instanceof Element) || event.target.id !== "pushed-case") return;
    const current = document.getElementById("case");
    if (!current || document.visibilityState !== "visible") {
      event.preventDefault();
      missedPush = true;
      return;
    }
    const pushed = /data-version="(\d+)"/.exec(event.detail.data || "");
    if (!pushed || parseInt(pushed[1], 10) <= parseInt(current.getAttribute("data-version") || "0", 10)) {
      event.preventDefault();
      return;
    }
    const token = document.querySelector("input[name=csrfmiddlewaretoken]");
    const kept = new Map();
    for (const selector of KEPT) {
      const own = current.querySelector(selector);
      if (own) kept.set(selector, own);
    }
    rememberSwap(current, null);
    swapping.pushed = { token: token ? token.value : "", kept: kept };
  });
  const KEPT = ["form.macro-apply", "#macro-listbox"];  // the person's own macros
  function fillPushed(root, pushed) {
    root.querySelectorAll("[data-kept]").forEach(function (place) {
      const own = pushed.kept.get(place.getAttribute("data-kept"));
      if (!own) { place.remove(); return; }
      place.replaceWith(own);
      // It acts on the case as pushed now, not as the page first showed it.
      const version = own.querySelector("input[type=hidden][name=version]");
      if (version && place.hasAttribute("data-version")) version.value = place.getAttribute("data-version");
      if (window.htmx) htmx.process(own);  // htmx let go of it with the #case it left
    });
    if (!pushed.token) return;
    root.querySelectorAll("form[method=post]").forEach(function (form) {
      if (form.querySelector("input[name=csrfmiddlewaretoken]")) return;
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "csrfmiddlewaretoken";
      input.value = pushed.token;
      form.prepend(input);
    });
  }

  // A pushed row replaces the row of the same case if this page shows it (nothing else: a
  // case that came into the list arrives with the pushed results). Its tick box and the
  // keyboard selection survive.
  const ROW_ID = /^\s*<tr id="(row-[^"]+)"/;
  let pushedRow = null;
  document.addEventListener("htmx:sseBeforeMessage", function (event) {
    if (!(event.target instanceof Element) || event.target.id !== "pushed-rows") return;
    const match = ROW_ID.exec(event.detail.data || "");
    const row = match && document.getElementById(match[1]);
    if (!row) { event.preventDefault(); return; }
    const box = row.querySelector("input[name=case]");
    pushedRow = { id: row.id, checked: !!(box && box.checked), signature: rowSignatures(row.parentNode).get(row.id) };
  });
  document.addEventListener("htmx:sseMessage", function (event) {
    if (!pushedRow || !(event.target instanceof Element) || event.target.id !== "pushed-rows") return;
    const state = pushedRow;
    pushedRow = null;
    const row = document.getElementById(state.id);
    if (!row) return;
    const box = row.querySelector("input[name=case]");
    if (box) box.checked = state.checked;
    if (state.id === selectedId) row.classList.add("selected");
    if (rowSignatures(row.parentNode).get(row.id) !== state.signature) announce("Case list updated: 1 changed.");
  });

  // An action's answer carries the case's list row out of band, for a page that shows the
  // list too; a page without that row drops it rather than have htmx report a missing target
  // (a console error after every action on the case page).
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    if (!(target instanceof Element) || target.id !== "case" || typeof event.detail.serverResponse !== "string") return;
    event.detail.serverResponse = event.detail.serverResponse.replace(
      /<template>\s*<tr id="(row-[^"]+)"[\s\S]*?<\/tr>\s*<\/template>/,
      function (all, id) { return document.getElementById(id) ? all : ""; });
  });

  // Say in each refresh request why it was sent (for logs and tests): a push, a catch-up, a poll.
  document.addEventListener("htmx:configRequest", function (event) {
    const elt = event.detail.elt;
    if (!(elt instanceof Element) || (elt.id !== "results" && elt.id !== "case")) return;
    const cause = event.detail.triggeringEvent && event.detail.triggeringEvent.type;
    event.detail.headers["X-Tracerail-Refresh"] = !cause ? "poll"
      : cause.indexOf("sse:") === 0 ? "push" : cause === "visible-again" ? "catch-up" : cause;
  });

  // A tab hidden for a while closes its stream: browsers allow six HTTP/1.1 connections per
  // host, and a person with many tabs open would otherwise starve their own page loads.
  // Coming back reopens it through the extension's own reconnect (which re-registers the
  // page's listeners) from the last position the page had: the server sends what it missed.
  tracerail.pauseAfterMs = 15000;
  let pauseTimer = null;
  const paused = [];
  function pauseStreams() {
    pauseTimer = null;
    for (const [elt, source] of sources) {
      if (!elt.isConnected || source.readyState === 2 /* CLOSED */) { sources.delete(elt); continue; }
      source.close();
      streams.delete(source);
      paused.push(source);
    }
  }
  function resumeStreams() {
    if (pauseTimer !== null) { window.clearTimeout(pauseTimer); pauseTimer = null; }
    let resumed = false;
    while (paused.length) {
      const source = paused.pop();
      // The extension reconnects a CLOSED source from its error handler.
      if (typeof source.onerror === "function") { source.onerror(new Event("error")); resumed = true; }
    }
    return resumed;
  }

  // Polling stops while the tab is hidden (hx-trigger filters on visibilityState);
  // coming back refreshes at once (after a paused stream: when it has reopened).
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      if (!resumeStreams()) document.dispatchEvent(new Event("visible-again"));
    } else if (pauseTimer === null) {
      pauseTimer = window.setTimeout(pauseStreams, tracerail.pauseAfterMs);
    }
  });

  // Shareable filter URLs: leave out the filters that are empty.
  document.addEventListener("htmx:configRequest", function (event) {
    if (event.detail.verb !== "get" || !(event.detail.elt instanceof HTMLElement) || event.detail.elt.id !== "filters") return;
    const params = event.detail.parameters;
    for (const key of Object.keys(params)) {
      const value = params[key];
      if (value === "" || (Array.isArray(value) && value.length === 0)) delete params[key];
    }
  });

  // HTMX changes the filter without reloading: save what the address bar shows now.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.id === "save-view") {
      const query = document.getElementById("save-view-query");
      if (query) query.value = window.location.search.replace(/^\?/, "");
    }
    if (form instanceof HTMLFormElement && form.id === "bulk") {
      const back = form.querySelector("input[name=back]");
      if (back) back.value = window.location.search.replace(/^\?/, "");
    }
  });

  // Keyboard: j/k move the selection in the case list, Enter opens it, "/" focuses search.
  let selectedId = null;
  function rows() { return Array.from(document.querySelectorAll("tr.case-row")); }
  function selected() { return selectedId ? document.getElementById(selectedId) : null; }
  function select(row) {
    const current = selected();
    if (current) current.classList.remove("selected");
    selectedId = row ? row.id : null;
    if (row) { row.classList.add("selected"); row.scrollIntoView({ block: "nearest" }); }
  }
  // Keep the selection across live refreshes of the results; keep the export link's filter
  // in step with the address bar.
  document.addEventListener("htmx:afterSettle", function () {
    const row = selected();
    if (row) row.classList.add("selected");
    const exportLink = document.getElementById("export-link");
    if (exportLink) exportLink.search = window.location.search;
    updateSelectedCount();
  });
  document.addEventListener("keydown", function (event) {
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]")) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.metaKey || event.ctrlKey || event.altKey || !shortcutsOn()) return;
    const all = rows();
    const index = all.indexOf(selected());
    if (event.key === "j" && all.length) { select(all[Math.min(index + 1, all.length - 1)]); event.preventDefault(); }
    else if (event.key === "k" && all.length) { select(all[Math.max(index - 1, 0)]); event.preventDefault(); }
    else if (event.key === "x" && selected()) {
      const box = selected().querySelector("input[name=case]");
      if (box) { box.checked = !box.checked; updateSelectedCount(); event.preventDefault(); }
    }
    else if (event.key === "Enter" && selected()) {
      const link = selected().querySelector("td.title a"); if (link) { link.click(); event.preventDefault(); }
    } else if (event.key === "c" && document.querySelector("#case .action-claim button")) {
      // Case page: c claims, m writes a comment, g goes back to the list.
      document.querySelector("#case .action-claim button").click(); event.preventDefault();
    } else if (event.key === "m" && document.getElementById("id_comment-body")) {
      document.getElementById("id_comment-body").focus(); event.preventDefault();
    } else if (event.key === "g" && document.getElementById("case") && !tracerail.dirty()) {
      window.location.href = "/cases/"; event.preventDefault();
    } else if (event.key === "h" && document.querySelector("nav.tabs") && !tracerail.dirty()) {
      // h switches between the case and its history.
      const other = document.querySelector("nav.tabs a:not([aria-current])");
      if (other) { other.click(); event.preventDefault(); }
    } else if (event.key === "/") {
      const search = document.querySelector("[data-search]");
      const drawer = search && search.closest("details");
      if (drawer) drawer.open = true;  // folded behind "Filters" on a narrow screen
      if (search) { search.focus(); event.preventDefault(); }
    }
  });
})();

// --- Macro picker (issue 25) ---------------------------------------------------------------
// In the comment box, "/" or "#" at the start of a word opens a listbox of the case's macros
// (the no-JS <select>'s options), filtered by what follows; ↑/↓ move, Enter picks (preview
// fetched from the server for this case and person), Escape closes. The comment box is the
// combobox (ARIA 1.2): focus stays in it, aria-activedescendant names the option.
(function () {
  let state = null;  // {box, list, start, options, index}

  function parts() {
    const box = document.getElementById("id_comment-body");
    const form = document.querySelector("#case form.macro-apply");
    const list = document.getElementById("macro-listbox");
    return box && form && list ? {box: box, form: form, list: list} : null;
  }
  function prepare() {
    const p = parts();
    if (!p || p.box.getAttribute("role") === "combobox") return;
    p.box.setAttribute("role", "combobox");
    p.box.setAttribute("aria-autocomplete", "list");
    p.box.setAttribute("aria-controls", "macro-listbox");
    p.box.setAttribute("aria-expanded", "false");
  }
  function close() {
    const p = parts();
    if (p) {
      p.list.hidden = true;
      p.list.replaceChildren();
      p.box.setAttribute("aria-expanded", "false");
      p.box.removeAttribute("aria-activedescendant");
    }
    state = null;
  }
  function token(box) {
    // The word being typed, when it starts with "/" or "#" at the start of a word.
    const upto = box.value.slice(0, box.selectionStart);
    const match = /(^|\s)([\/#])([^\s\/#]*)$/.exec(upto);
    return match ? {start: upto.length - match[2].length - match[3].length, query: match[3]} : null;
  }
  function show(p, found) {
    const select = p.form.querySelector("select[name=macro]");
    const q = found.query.toLowerCase();
    const options = Array.from(select.options).filter(function (o) {
      return o.textContent.toLowerCase().indexOf(q) !== -1;
    });
    p.list.replaceChildren();
    options.forEach(function (o, i) {
      const li = document.createElement("li");
      li.id = "macro-option-" + o.value;
      li.setAttribute("role", "option");
      li.dataset.value = o.value;
      li.textContent = o.textContent;
      li.addEventListener("mousedown", function (e) { e.preventDefault(); state.index = i; pick(); });
      p.list.appendChild(li);
    });
    state = {start: found.start, options: options, index: options.length ? 0 : -1};
    p.list.hidden = !options.length;
    p.box.setAttribute("aria-expanded", options.length ? "true" : "false");
    mark(p);
  }
  function mark(p) {
    Array.from(p.list.children).forEach(function (li, i) {
      li.setAttribute("aria-selected", i === state.index ? "true" : "false");
    });
    const active = p.list.children[state.index];
    if (active) p.box.setAttribute("aria-activedescendant", active.id);
    else p.box.removeAttribute("aria-activedescendant");
  }
  function pick() {
    const p = parts();
    if (!p || !state || state.index < 0) return;
    const option = state.options[state.index];
    const end = p.box.selectionStart;
    // The "/word" typed to find it is not part of the reply.
    p.box.value = p.box.value.slice(0, state.start) + p.box.value.slice(end);
    p.box.selectionStart = p.box.selectionEnd = state.start;
    p.form.querySelector("select[name=macro]").value = option.value;
    close();
    preview(p, option.value);
  }
  function preview(p, value) {
    const url = p.form.dataset.preview.replace(/\/0\/preview\/$/, "/" + value + "/preview/");
    const region = document.getElementById("macro-preview");
    fetch(url, {headers: {"HX-Request": "true"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        region.innerHTML = html;
        p.form.querySelector("button[type=submit]").focus();
      })
      .catch(function () { region.textContent = "The preview could not be loaded."; });
  }
  document.addEventListener("input", function (event) {
    const p = parts();
    if (!p || event.target !== p.box) return;
    prepare();
    const found = token(p.box);
    if (found) show(p, found); else close();
  });
  document.addEventListener("keydown", function (event) {
    const p = parts();
    if (!p || event.target !== p.box || !state) return;
    const n = state.options.length;
    if (event.key === "ArrowDown" && n) { state.index = (state.index + 1) % n; mark(p); event.preventDefault(); }
    else if (event.key === "ArrowUp" && n) { state.index = (state.index - 1 + n) % n; mark(p); event.preventDefault(); }
    else if (event.key === "Enter" && n) { pick(); event.preventDefault(); }
    else if (event.key === "Escape") { close(); event.preventDefault(); event.stopPropagation(); }
  }, true);
  document.addEventListener("focusout", function (event) {
    const p = parts();
    if (p && event.target === p.box) window.setTimeout(close, 150);
  });
  // Applying hands the comment box's text to the server, which gives it back on a refusal.
  document.addEventListener("submit", function (event) {
    const p = parts();
    if (p && event.target === p.form) p.form.querySelector("input[name=typed]").value = p.box.value;
  }, true);
  document.addEventListener("htmx:configRequest", function (event) {
    const p = parts();
    if (p && event.detail.elt === p.form) event.detail.parameters.typed = p.box.value;
  });
})();
