"""Flow Forecaster's beat, on a stack of its own (ff_beat) beside the other
Flow Forecaster tests: exactly one beat ticks after a deploy and a redeploy,
and whatever the number of hosts in the beat group or their order."""

from __future__ import annotations

import pytest
from flow_support import INVENTORY, FlowStack

FLOW = FlowStack("ff_beat", http_port=9280, https_port=9643)
deployed = FLOW.fixture()


def test_exactly_one_beat_ticks_after_deploy_and_redeploy(deployed, docker_client):
    FLOW.assert_one_beat_ticking(docker_client)
    FLOW.deploy()
    FLOW.assert_one_beat_ticking(docker_client)


@pytest.mark.parametrize("twin_first", [False, True], ids=["twin-second", "twin-first"])
def test_one_beat_with_two_hosts_in_the_beat_group(deployed, docker_client, tmp_path, twin_first):
    """A second inventory name for this same machine joins the beat group: still one beat,
    on the first host of the group, and moving it never runs two."""
    twin = tmp_path / "twin.yml"
    twin.write_text(
        "all:\n"
        "  hosts:\n"
        "    beat-twin:\n"
        "      ansible_connection: local\n"
        '      ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
        "  children:\n"
        "    beat:\n"
        "      hosts:\n"
        "        beat-twin: {}\n"
    )
    # The group lists hosts in the order the inventory sources are read.
    if twin_first:
        run = FLOW.run(inventory=str(twin), args=["-i", INVENTORY])
    else:
        run = FLOW.run(args=["-i", str(twin)])
    assert run.rc == 0, run.explain()
    FLOW.assert_one_beat_ticking(docker_client, "beat-twin" if twin_first else "localhost")

    FLOW.deploy()
    FLOW.assert_one_beat_ticking(docker_client)
