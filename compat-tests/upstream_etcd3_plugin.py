"""pytest plugin loaded (``-p upstream_etcd3_plugin``) into the run of python-etcd3
0.12.0's OWN test suite by test_upstream_python_etcd3.py.  It changes no test, only
the environment the upstream suite was written for (pifpaf's etcd on localhost:2379):

* ``etcd3.client()`` called WITHOUT host/port (TestAlarms, TestClient and
  test_watch_timeout_on_establishment do that) connects to PYTHON_ETCD_HTTP_URL
  instead of localhost:2379, so those tests exercise the server under test and
  never a stray server on the default port.  Calls that name a host/port are
  untouched.
* Hypothesis runs derandomized, without an example database and with
  UPSTREAM_HYPOTHESIS_EXAMPLES examples per test (default 25, hypothesis' own
  default is 100), so both servers get exactly the same examples and the run
  stays short.  Health checks are off: upstream's @given tests use a
  function-scoped fixture, which hypothesis >= 6 refuses by default.
  The upstream module registers its own "default" profile (deadline=None) at
  import; it inherits these settings because this profile is loaded first.
"""

import os
from urllib.parse import urlparse


def pytest_configure(config):
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "conclave-yardstick",
        max_examples=int(os.environ.get("UPSTREAM_HYPOTHESIS_EXAMPLES", "25")),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    settings.load_profile("conclave-yardstick")

    endpoint = os.environ.get("PYTHON_ETCD_HTTP_URL")
    if not endpoint:
        return
    url = urlparse(endpoint)

    import etcd3

    original = etcd3.client

    def client(*args, **kwargs):
        if not args and "host" not in kwargs and "port" not in kwargs:
            kwargs["host"], kwargs["port"] = url.hostname, url.port
        return original(*args, **kwargs)

    client.__doc__ = original.__doc__
    etcd3.client = client
