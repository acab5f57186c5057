from __future__ import annotations

from ansible_collections.pydeploy.stack.plugins.filter.nginx import nginx_plan, nginx_site_errors

PROCESSES = {
    "web": {"command": "uvicorn app:app", "port": 8000, "replicas": 2},
    "frontend": {"command": "node server.js", "port": 3000, "replicas": 2},
    "worker": "celery -A app worker",
    "beat": {"command": "celery -A app beat", "singleton": True, "port": 9000},
}
VOLUMES = {"static": {"path": "/app/static", "serve": "/static/"}, "dist": "/app/dist"}


def plan(sites, **kwargs):
    return nginx_plan(sites, "shop", PROCESSES, VOLUMES, **kwargs)


def test_without_sites_one_site_of_the_server_names_proxies_to_web_with_the_rate_limits_and_served_volumes():
    result = plan([], server_names=["shop.test", "www.shop.test"], rate_limits={"/api/": {"rate": "10r/s"}})
    (site,) = result["sites"]
    assert site["names"] == ["shop.test", "www.shop.test"] and site["default"] and site["redirect_from"] == []
    assert [(loc["path"], loc["kind"], loc["proxy_pass"]) for loc in site["locations"]] == [
        ("/api/", "web", "http://shop_web"),
        ("/", "web", "http://shop_web"),
    ]
    assert site["locations"][0]["rate_limit"] == {"zone": "pydeploy_1", "burst": 20}
    assert result["zones"] == [{"name": "pydeploy_1", "rate": "10r/s"}]
    assert [item["prefix"] for item in site["statics"]] == ["/static/"]
    assert result["names"] == ["shop.test", "www.shop.test"] and result["check_name"] == "shop.test"


def test_sites_routes_to_processes_and_volumes_longest_path_first():
    sites = [
        {
            "names": ["api.shop.test"],
            "routes": [{"path": "/ws/", "process": "web", "websocket": True}, {"path": "/", "process": "web"}],
        },
        {
            "names": ["shop.test"],
            "redirect_from": ["www.shop.test"],
            "read_timeout": 30,
            "routes": [
                {"path": "/", "process": "frontend"},
                {"path": "/assets/", "volume": "dist", "max_age": 31536000},
                {"path": "/api/", "process": "web", "rate_limit": {"rate": "5r/s", "burst": 10}, "read_timeout": 90},
            ],
        },
    ]
    result = plan(sites, defaults={"health_path": "/health"})
    api, apex = result["sites"]
    assert api["default"] and not apex["default"]
    ws = api["locations"][0]
    assert (ws["path"], ws["websocket"], ws["read_timeout"]) == ("/ws/", True, 3600)
    assert [loc["path"] for loc in apex["locations"]] == ["/assets/", "/api/", "/"]
    assets, api_route, root = apex["locations"]
    assert (
        assets["kind"] == "volume" and assets["root"] == "/srv/pydeploy-routes/dist/" and assets["max_age"] == 31536000
    )
    assert api_route["rate_limit"] == {"zone": "pydeploy_1", "burst": 10} and api_route["read_timeout"] == 90
    assert root["kind"] == "process" and root["proxy_pass"] == "http://$pydeploy_up_frontend:3000"
    assert root["read_timeout"] == 30
    assert result["processes"] == [
        {
            "process": "frontend",
            "variable": "pydeploy_up_frontend",
            "containers": ["shop-frontend-1", "shop-frontend-2"],
        }
    ]
    assert result["mounts"] == [
        {"type": "volume", "source": "shop-dist", "target": "/srv/pydeploy-routes/dist", "read_only": True}
    ]
    assert result["names"] == ["api.shop.test", "shop.test", "www.shop.test"]
    # The health path goes to web on the api site, not on the apex (frontend).
    assert result["check_name"] == "api.shop.test"


def test_a_site_without_a_route_for_the_root_sends_it_to_web():
    (site,) = plan([{"names": ["a.test"], "routes": [{"path": "/x/", "process": "frontend"}]}])["sites"]
    assert [(loc["path"], loc["kind"]) for loc in site["locations"]] == [("/x/", "process"), ("/", "web")]


def test_good_sites_have_no_errors():
    sites = [
        {"names": ["a.test"], "redirect_from": ["www.a.test"], "routes": [{"path": "/", "process": "frontend"}]},
        {"names": ["*.b.test"], "client_max_body_size": "20m", "routes": [{"path": "/s/", "volume": "dist"}]},
    ]
    settings = {"rate_limit_allow": ["10.0.0.0/8", "127.0.0.1", "::1"], "gzip_types": ["text/css", "image/svg+xml"]}
    assert nginx_site_errors(sites, PROCESSES, VOLUMES, {}, settings) == []


def test_each_problem_is_named():
    sites = [
        {
            "names": ["a.test", "bad name"],
            "routes": [{"path": "api", "process": "web"}, {"path": "/", "process": "nope"}],
        },
        {"names": ["a.test"], "routes": [{"path": "/", "process": "web", "volume": "dist"}]},
        {
            "names": ["c.test"],
            "routes": [
                {"path": "/w/", "process": "worker"},
                {"path": "/b/", "process": "beat"},
                {"path": "/r/", "process": "web", "rate_limit": {"rate": "10/s", "burst": -1}},
                {"path": "/r/", "volume": "missing"},
                {"path": "/t/", "process": "web", "read_timeout": 0, "client_max_body_size": "lots"},
            ],
        },
        {"names": []},
    ]
    settings = {"rate_limit_allow": ["10.0.0.300/8"], "real_ip_from": ["lb"], "gzip_types": ["css"]}
    errors = nginx_site_errors(sites, PROCESSES, VOLUMES, {"/api/": {"rate": "1r/s"}}, settings)
    expected = [
        "nginx_sites[0].names: 'bad name' is not a host name",
        "nginx_sites[0].routes[0].path must be a URL path",
        "nginx_sites[0].routes[1].process: no process 'nope'",
        "nginx_sites[1].names: a.test is also nginx_sites[0].names's",
        "nginx_sites[1].routes[0]: a route goes to one process or one volume",
        "nginx_sites[2].routes[0].process: stack_processes.worker has no port",
        "nginx_sites[2].routes[1].process: stack_processes.beat is a singleton",
        "nginx_sites[2].routes[2].rate_limit.rate must be requests per second",
        "nginx_sites[2].routes[2].rate_limit.burst must be",
        "nginx_sites[2].routes[3].path /r/ is twice",
        "nginx_sites[2].routes[3].volume: no volume 'missing'",
        "nginx_sites[2].routes[4].client_max_body_size must be a size",
        "nginx_sites[2].routes[4].read_timeout must be seconds",
        "nginx_sites[3].names must name at least one host",
        "nginx_rate_limits: with nginx_sites",
        "nginx_rate_limit_allow: '10.0.0.300/8'",
        "nginx_real_ip_from: 'lb'",
        "nginx_gzip_types: 'css'",
    ]
    for start in expected:
        assert any(error.startswith(start) for error in errors), (start, errors)
    assert len(errors) == len(expected), errors


def test_a_process_other_than_web_needs_the_proxy_on_a_worker_host():
    sites = [{"names": ["a.test"], "routes": [{"path": "/", "process": "frontend"}]}]
    (error,) = nginx_site_errors(sites, PROCESSES, VOLUMES, {}, {"proxy_runs_workers": False})
    assert error.startswith("nginx_sites[0].routes[0].process: the proxy reaches frontend on its own host")


def test_the_legacy_rate_limits_are_checked_too():
    errors = nginx_site_errors([], PROCESSES, VOLUMES, {"api": {"rate": "fast"}})
    assert errors[0].startswith("nginx_rate_limits: 'api' is not a URL path")
    assert errors[1].startswith("nginx_rate_limits['api'].rate must be")
