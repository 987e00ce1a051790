/** Tiny DOM helpers. Text always goes in as text (textContent), never as HTML. */

/**
 * Builds an element: `h("li", { class: "msg", dataset: { seq: 3 } }, "text", childNode)`.
 * Strings become text nodes, so user input can never become markup.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** A random id for retry-safe posts (crypto.randomUUID needs a secure context). */
export function newId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

export function clockTime(iso) {
  return iso ? timeFormat.format(new Date(iso)) : "";
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A day and a time, e.g. when a share link expires. */
export function dateTime(iso) {
  return iso ? dateTimeFormat.format(new Date(iso)) : "";
}

/** "just now", "5 min ago", "3 h ago", or a date. */
export function ago(iso) {
  if (!iso) return "no messages yet";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}
