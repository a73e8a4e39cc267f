// pixtill view: one page, no dependencies. Every value from the dataset is put on the page
// with textContent or as an attribute value, never parsed as HTML.
"use strict";
(function () {
  const PAGE = 50;
  const STATIC = window.PIXTILL_STATIC || null; // set by data/leaves.js in an exported folder
  const state = { leaves: [], leaf: 0, offset: 0, total: 0, search: "", failed: false,
                  sort: "", desc: false, seq: 0, layout: "table" };
  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // -- data: the server's API, or the exported files ------------------------------------
  async function api(path, params) {
    const url = new URL(path, window.location.href);
    for (const [k, v] of Object.entries(params || {})) url.searchParams.set(k, v);
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  const loaded = {}; // static mode: leaf -> all its rows
  window.PIXTILL_ROWS = window.PIXTILL_ROWS || [];
  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.onload = resolve;
      s.onerror = () => reject(new Error("cannot load " + src));
      document.body.appendChild(s);
    });
  }
  async function staticRows(leaf) {
    if (!loaded[leaf]) {
      const chunks = STATIC.leaves[leaf].chunks;
      for (let c = 0; c < chunks; c++) await loadScript("data/rows-" + leaf + "-" + c + ".js");
      const rows = [];
      for (const part of window.PIXTILL_ROWS) if (part.leaf === leaf) rows.push(...part.rows);
      rows.sort((a, b) => a.row - b.row);
      loaded[leaf] = rows;
    }
    return loaded[leaf];
  }
  function matches(row, needle, columns) {
    for (const c of columns) {
      if (c.kind === "image" || c.kind === "images" || c.kind === "number") continue;
      const v = row.cells[c.name];
      if (typeof v === "string" && v.toLowerCase().includes(needle)) return true;
    }
    return false;
  }
  async function fetchPage() {
    const leaf = state.leaf;
    if (!STATIC) {
      const params = { leaf, offset: state.offset, limit: PAGE };
      if (state.search) params.q = state.search;
      if (state.failed) params.failed = "1";
      if (state.sort) { params.sort = state.sort; params.desc = state.desc ? "1" : "0"; }
      return api("api/rows", params);
    }
    let rows = await staticRows(leaf);
    const columns = state.leaves[leaf].columns;
    if (state.failed) rows = rows.filter((r) => r.error);
    if (state.search) {
      const needle = state.search.toLowerCase();
      rows = rows.filter((r) => matches(r, needle, columns));
    }
    if (state.sort) {
      const key = state.sort, sign = state.desc ? -1 : 1;
      rows = rows.slice().sort((a, b) => {
        const x = a.cells[key], y = b.cells[key];
        if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
        if (y === null || y === undefined) return -1;
        return x < y ? -sign : x > y ? sign : 0;
      });
    }
    return { total: rows.length, offset: state.offset,
             rows: rows.slice(state.offset, state.offset + PAGE) };
  }

  // -- rendering ------------------------------------------------------------------------
  function showFull(src, caption) {
    $("overlay-image").src = src;
    $("overlay-caption").textContent = caption;
    $("overlay").hidden = false;
  }
  function imageNode(cell, caption) {
    if (!cell || !cell.thumb) return el("span", "none", "—");
    const img = el("img");
    img.src = cell.thumb; img.alt = caption; img.loading = "lazy"; img.title = "click for full size";
    img.addEventListener("click", () => showFull(cell.full, caption));
    return img;
  }
  function cellNode(column, value, row) {
    const td = el("td", column.kind);
    const caption = column.name + ", row " + row.row;
    if (column.kind === "image") td.appendChild(imageNode(value, caption));
    else if (column.kind === "images") {
      const list = el("div", "list");
      for (const item of value || []) list.appendChild(imageNode(item, caption));
      if (!value || !value.length) list.appendChild(el("span", "none", "—"));
      td.appendChild(list);
    } else if (value === null || value === undefined) td.appendChild(el("span", "none", "—"));
    else if (column.kind === "number") td.textContent = String(value);
    else td.appendChild(el("div", column.kind === "model" ? "model" : column.kind === "text" ? "text" : "other", value));
    return td;
  }
  function shownColumns() {
    return state.leaves[state.leaf].columns.filter((c) => c.kind !== "metadata");
  }
  function renderHead() {
    const head = document.querySelector("#rows thead");
    head.replaceChildren();
    const tr = el("tr");
    tr.appendChild(el("th", "index", "#"));
    for (const c of shownColumns()) tr.appendChild(el("th", c.kind, c.name));
    tr.appendChild(el("th", "tokens", "tokens in / out"));
    tr.appendChild(el("th", "error", "error"));
    head.appendChild(tr);
  }
  function renderCards(page) {
    const grid = $("grid");
    grid.replaceChildren();
    const columns = shownColumns();
    for (const row of page.rows) {
      const card = el("div", row.error ? "card failed" : "card");
      card.dataset.row = String(row.row);
      const head = el("div", "head", "#" + row.row + " ");
      if (row.error) head.appendChild(el("span", "badge", "failed"));
      card.appendChild(head);
      const images = el("div", "images");
      const fields = el("dl");
      for (const c of columns) {
        const value = row.cells[c.name];
        if (c.kind === "image" || c.kind === "images") {
          const figure = el("figure");
          const caption = c.name + ", row " + row.row;
          const items = c.kind === "image" ? [value] : (value && value.length ? value : [null]);
          for (const item of items) figure.appendChild(imageNode(item, caption));
          figure.appendChild(el("figcaption", null, c.name));
          images.appendChild(figure);
        } else if (value !== null && value !== undefined) {
          fields.appendChild(el("dt", null, c.name));
          const dd = el("dd");
          dd.appendChild(el("div", c.kind === "text" ? "text" : c.kind === "model" ? "model" : "other", value));
          fields.appendChild(dd);
        }
      }
      if (row.tokens) {
        fields.appendChild(el("dt", null, "tokens in / out"));
        fields.appendChild(el("dd", "tokens", row.tokens.input + " / " + row.tokens.output));
      }
      if (images.childNodes.length) card.appendChild(images);
      card.appendChild(fields);
      if (row.error) card.appendChild(el("div", "error", row.error));
      grid.appendChild(card);
    }
  }
  function renderRows(page) {
    const grid = state.layout === "grid";
    $("grid").hidden = !grid;
    $("rows").hidden = grid;
    const body = document.querySelector("#rows tbody");
    body.replaceChildren();
    if (grid) renderCards(page); else $("grid").replaceChildren();
    for (const row of grid ? [] : page.rows) {
      const tr = el("tr", row.error ? "row failed" : "row");
      tr.dataset.row = String(row.row);
      const index = el("td", "index", row.row);
      if (row.error) { index.appendChild(el("br")); index.appendChild(el("span", "badge", "failed")); }
      tr.appendChild(index);
      for (const c of shownColumns()) tr.appendChild(cellNode(c, row.cells[c.name], row));
      tr.appendChild(el("td", "tokens", row.tokens ? row.tokens.input + " / " + row.tokens.output : ""));
      const err = el("td");
      if (row.error) err.appendChild(el("div", "error", row.error));
      tr.appendChild(err);
      body.appendChild(tr);
    }
    const last = Math.min(page.offset + page.rows.length, page.total);
    $("status").textContent = page.total === 0 ? "no rows"
      : "rows " + (page.offset + 1) + "–" + last + " of " + page.total;
    $("prev").disabled = page.offset <= 0;
    $("next").disabled = last >= page.total;
    document.body.dataset.ready = String(state.seq);
  }
  async function refresh() {
    const seq = ++state.seq;
    delete document.body.dataset.ready;
    try {
      const page = await fetchPage();
      if (seq !== state.seq) return; // a newer request superseded this one
      state.total = page.total;
      renderRows(page);
    } catch (error) {
      $("status").textContent = "error: " + error.message;
      document.body.dataset.ready = String(seq);
    }
  }
  function renderTabs() {
    const tabs = $("tabs");
    tabs.replaceChildren();
    state.leaves.forEach((leaf, i) => {
      const b = el("button", "tab", leaf.name + " (" + leaf.rows + ")");
      b.type = "button"; b.setAttribute("role", "tab");
      b.setAttribute("aria-selected", String(i === state.leaf));
      b.addEventListener("click", () => selectLeaf(i));
      tabs.appendChild(b);
    });
  }
  function selectLeaf(i) {
    state.leaf = i; state.offset = 0; state.sort = "";
    renderTabs();
    const sort = $("sort");
    sort.replaceChildren(el("option", null, "row order"));
    sort.firstChild.value = "";
    for (const c of state.leaves[i].columns) {
      if (c.kind !== "number") continue;
      const o = el("option", null, c.name); o.value = c.name; sort.appendChild(o);
    }
    renderHead();
    refresh();
  }

  // -- wiring ---------------------------------------------------------------------------
  let timer = null;
  $("search").addEventListener("input", (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.search = e.target.value; state.offset = 0; refresh(); }, 250);
  });
  $("failed").addEventListener("change", (e) => { state.failed = e.target.checked; state.offset = 0; refresh(); });
  $("sort").addEventListener("change", (e) => { state.sort = e.target.value; state.offset = 0; refresh(); });
  $("order").addEventListener("change", (e) => { state.desc = e.target.value === "desc"; state.offset = 0; refresh(); });
  $("layout").addEventListener("change", (e) => { state.layout = e.target.value; refresh(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
  $("next").addEventListener("click", () => { if (state.offset + PAGE < state.total) { state.offset += PAGE; refresh(); } });
  $("overlay").addEventListener("click", () => { $("overlay").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("overlay").hidden = true; });

  async function start() {
    try {
      const info = STATIC || await api("api/leaves");
      state.leaves = info.leaves;
      $("title").textContent = info.title;
      document.title = "pixtill view: " + info.title;
      if (!state.leaves.length) { $("status").textContent = "no tables"; return; }
      selectLeaf(0);
    } catch (error) {
      $("status").textContent = "error: " + error.message;
    }
  }
  start();
})();
