// Where the API is. Empty: derived from this page's address, the API being
// served at api.<this domain> (conductor.example -> https://api.conductor.example),
// or on the same origin when the page itself is served from api.* or localhost.
window.CONDUCTOR_CONFIG = { apiUrl: "", wsUrl: "" };
