// Conductor CRM's page: lists and adds contacts through the API and shows the
// server's events as they come over the websocket.
(function () {
  "use strict";
  var config = window.CONDUCTOR_CONFIG || {};

  function apiBase() {
    if (config.apiUrl) return config.apiUrl.replace(/\/$/, "");
    var host = location.hostname;
    if (host === "localhost" || host === "127.0.0.1" || host.indexOf("api.") === 0) return location.origin;
    var port = location.port ? ":" + location.port : "";
    return location.protocol + "//api." + host.replace(/^www\./, "") + port;
  }

  var API = apiBase();
  var WS = config.wsUrl || API.replace(/^http/, "ws") + "/ws/events";

  function $(id) { return document.getElementById(id); }

  function text(tag, content) {
    var node = document.createElement(tag);
    node.textContent = content;
    return node;
  }

  function request(method, path, body) {
    return fetch(API + path, {
      method: method,
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error(data.detail ? JSON.stringify(data.detail) : response.statusText);
        return data;
      });
    });
  }

  function health() {
    request("GET", "/api/v1/health").then(function (data) {
      $("api-version").textContent = data.version;
      $("api-status").textContent = data.status + " (mongodb " + data.services.mongodb +
        ", redis " + data.services.redis + ")";
    }).catch(function (error) { $("api-status").textContent = "unreachable: " + error.message; });
  }

  function contacts() {
    request("GET", "/api/v1/contacts?limit=100").then(function (data) {
      $("contact-count").textContent = data.count;
      var list = $("contacts");
      list.textContent = "";
      data.contacts.forEach(function (c) {
        list.appendChild(text("li", c.name + " <" + c.email + ">" + (c.company ? ", " + c.company : "")));
      });
    });
  }

  $("contact-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    var body = { name: form.name.value, email: form.email.value };
    if (form.company.value) body.company = form.company.value;
    $("form-error").textContent = "";
    request("POST", "/api/v1/contacts", body).then(function () { form.reset(); contacts(); })
      .catch(function (error) { $("form-error").textContent = error.message; });
  });

  function connect() {
    var socket = new WebSocket(WS);
    socket.onopen = function () { $("ws-status").textContent = "(connected)"; socket.send("hello"); };
    socket.onclose = function () { $("ws-status").textContent = "(reconnecting)"; setTimeout(connect, 2000); };
    socket.onmessage = function (message) {
      var events = $("events");
      events.insertBefore(text("li", message.data), events.firstChild);
      while (events.children.length > 50) events.removeChild(events.lastChild);
      if (message.data.indexOf('"contact.') >= 0) contacts();
    };
  }

  health();
  contacts();
  connect();
})();
