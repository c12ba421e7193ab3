// The browsable API's behaviour: log in, keep the access token in this tab
// (sessionStorage), and send the pages' forms with fetch + the bearer token.
"use strict";

const TOKEN = "stores-api.token";
const USER = "stores-api.username";

function token() { return sessionStorage.getItem(TOKEN); }

function say(output, text, ok) {
  if (!output) return;
  output.textContent = text;            // textContent: never parsed as HTML
  output.classList.toggle("ok", !!ok);
}

async function problemText(response) {
  try {
    const problem = await response.json();
    const fields = (problem.errors || []).map((e) => `${e.field}: ${e.message}`);
    return [problem.detail || problem.title || response.statusText, ...fields].join("\n");
  } catch (err) {
    return `${response.status} ${response.statusText}`;
  }
}

async function api(method, url, body, contentType) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = contentType;
  return fetch(url, { method, headers, body });
}

function showSession() {
  const name = sessionStorage.getItem(USER);
  document.getElementById("login-form").hidden = !!name;
  document.getElementById("signed-in").hidden = !name;
  document.getElementById("signed-in-name").textContent = name || "";
  document.querySelectorAll(".owner-only").forEach((el) => {
    el.hidden = !name || el.dataset.owner !== name;
  });
}

async function logIn(form) {
  const body = JSON.stringify({ username: form.username.value, password: form.password.value });
  const response = await api("POST", form.dataset.login, body, "application/json");
  const message = document.getElementById("session-message");
  if (!response.ok) { say(message, await problemText(response)); return; }
  sessionStorage.setItem(TOKEN, (await response.json()).access_token);
  sessionStorage.setItem(USER, form.username.value);
  say(message, "");
  showSession();
}

async function register(form) {
  const body = JSON.stringify({ username: form.username.value, password: form.password.value });
  const response = await api("POST", form.dataset.register, body, "application/json");
  if (!response.ok) { say(document.getElementById("session-message"), await problemText(response)); return; }
  await logIn(form);
}

async function logOut() {
  const form = document.getElementById("login-form");
  await api("POST", form.dataset.logout);
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(USER);
  showSession();
}

async function submitApiForm(event) {
  event.preventDefault();
  const form = event.target;
  const output = form.querySelector("output");
  if (!token()) { say(output, "Log in first (top right)."); return; }
  const method = form.dataset.method;
  const data = new URLSearchParams();
  for (const [key, value] of new FormData(form)) if (value !== "") data.append(key, value);
  const body = method === "DELETE" ? undefined : data.toString();
  const response = await api(method, form.getAttribute("action"), body,
                             "application/x-www-form-urlencoded");
  if (response.status === 401) {        // expired or revoked: log in again
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(USER);
    showSession();
  }
  if (!response.ok) { say(output, await problemText(response)); return; }
  if (response.status === 201 && response.headers.get("Location")) {
    window.location.assign(response.headers.get("Location"));
  } else if (form.dataset.after) {
    window.location.assign(form.dataset.after);
  } else {
    window.location.reload();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const login = document.getElementById("login-form");
  login.addEventListener("submit", (event) => { event.preventDefault(); logIn(login); });
  document.getElementById("register-button").addEventListener("click", () => register(login));
  document.getElementById("logout-button").addEventListener("click", logOut);
  document.querySelectorAll("form.api-form").forEach((f) => f.addEventListener("submit", submitApiForm));
  showSession();
});
