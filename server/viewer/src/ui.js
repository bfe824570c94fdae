// Small DOM helpers shared by the panels.
export const $ = (id) => document.getElementById(id);

// An element with attributes and children (strings become text: nothing is parsed as HTML).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "className") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) el.append(child);
  }
  return el;
}

export function progressBar(label, value) {
  return h("progress", { max: 100, value: Math.round(value), "aria-label": label });
}

export function isHttp(href) {
  return typeof href === "string" && /^https?:\/\//.test(href);
}

// Shows one panel of the tab list; arrow keys move between tabs.
export function setUpTabs(onShow) {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const show = (tab) => {
    for (const t of tabs) {
      const selected = t === tab;
      t.setAttribute("aria-selected", String(selected));
      t.tabIndex = selected ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !selected;
    }
    onShow(tab.id.replace("tab-", ""));
  };
  tabs.forEach((tab, n) => {
    tab.tabIndex = n === 0 ? 0 : -1;
    tab.addEventListener("click", () => show(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
      if (!step) return;
      e.preventDefault();
      const next = tabs[(n + step + tabs.length) % tabs.length];
      next.focus();
      show(next);
    });
  });
  return (name) => show($(`tab-${name}`));
}

export function message(error) {
  return error && error.message ? error.message : String(error);
}
