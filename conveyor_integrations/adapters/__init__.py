"""Framework adapters: ``adapters.langchain`` and ``adapters.llamaindex``, each behind its extra.

Importing this package imports no framework; import the submodule you need::

    from conveyor_integrations.adapters.langchain import ChatConveyor
"""

__all__: list[str] = []
