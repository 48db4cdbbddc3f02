"""The typed records of runs and states name exactly the columns their tables have."""

from __future__ import annotations

import typing

from runwire_server.run_records import FlowRunRecord, StateRecord, TaskRunRecord
from runwire_server.storage import models as m


def _columns(model: type) -> set[str]:
    return {column.name for column in m.table_of(model).columns}


def test_run_records_name_every_column_of_their_runs_table_and_tags_and_state() -> None:
    for record, model in ((FlowRunRecord, m.FlowRun), (TaskRunRecord, m.TaskRun)):
        assert set(typing.get_type_hints(record)) == _columns(model) | {"tags", "state"}


def test_state_records_name_every_column_of_the_states_tables_but_their_owner() -> None:
    hints = set(typing.get_type_hints(StateRecord))
    assert hints == _columns(m.FlowRunState) - {"flow_run_id"}
    assert hints == _columns(m.TaskRunState) - {"task_run_id"}
