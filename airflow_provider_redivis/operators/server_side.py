"""RedivisServerSideUploadOperator: Redivis fetches the file (Cloud Storage) or copies a table; the worker sends nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_redivis.engine.options import UploadSpec, infer_upload_type
from airflow_provider_redivis.engine.run_sharing import RunSharing
from airflow_provider_redivis.engine.status import summarize_upload
from airflow_provider_redivis.engine.transfer import TransferJob, transfer_source
from airflow_provider_redivis.hooks.redivis import RedivisHook
from airflow_provider_redivis.operators.upload import RedivisResumableUploadOperator
from airflow_provider_redivis.references import is_template

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_redivis.checkpoint_store import CheckpointStore


class RedivisServerSideUploadOperator(RedivisResumableUploadOperator):
    """Create an upload that Redivis fills itself (``transferSpecification``): zero bytes through the worker.

    The waiting, ``if_exists``, the buttons, the asset outlet and lineage are the upload operator's; what
    differs is that nothing is sent: the upload is created once across retries (a retry after a lost answer
    attaches to the upload its first try created, never makes a second) and Redivis fetches the source.

    :param source: ``gs://bucket/path/to/file.csv``, fetched by Redivis as ``identity``. Templated.
    :param identity: the Google account, linked to your Redivis account, that can read the object. Templated.
    :param source_table: instead of ``source``: another Redivis table (``owner.dataset[:version].table``),
        copied into this one. Templated.
    :param table: ``owner.dataset:next.table``. Templated.
    :param upload_name: default: the object's file name, or the source table's name. Templated.

    ``upload_type``, ``if_exists``, the upload options (``delimiter``, ...), ``wait_for_completion``,
    ``deferrable``, ``poll_interval`` and ``wait_timeout`` are as on :class:`RedivisResumableUploadOperator`.
    Any other source (a local path, ``s3://``, ``https://``) is refused before anything is asked of Redivis:
    that operator streams it through the worker.
    """

    template_fields: Sequence[str] = (
        *RedivisResumableUploadOperator.template_fields,
        "identity",
        "source_table",
    )

    def __init__(
        self,
        *,
        table: str,
        source: str | None = None,
        identity: str | None = None,
        source_table: str | None = None,
        **kwargs: Any,
    ) -> None:
        for streamed in ("chunk_size", "checksum", "transport"):
            if streamed in kwargs:
                raise TypeError(
                    f"{streamed} is about sending bytes; RedivisServerSideUploadOperator sends none."
                )
        if not any(is_template(value) for value in (source, identity, source_table)):
            transfer_source(source, source_table, identity)  # refused at DAG parse, before anything runs
        super().__init__(source=source, table=table, **kwargs)
        self.identity = identity
        self.source_table = source_table

    def _execute(self, context: Any, store: CheckpointStore) -> dict[str, Any]:
        transfer = transfer_source(self.source, self.source_table, self.identity)
        name = self.upload_name or transfer.default_name
        spec = UploadSpec(
            table=self.table,
            name=name,
            upload_type=self.upload_type or infer_upload_type(name),
            if_exists=self.if_exists,
            options=self._upload_options(),
        )
        hook = RedivisHook(redivis_conn_id=self.redivis_conn_id)
        self._announce_store(store)
        ti = context["ti"]
        RunSharing(ti, spec.table).claim(spec.name)
        result = TransferJob(hook, store, spec, transfer).run()
        self._publish_links(ti, hook, result.upload)  # now, so a wait that fails keeps the buttons
        if result.skipped:
            self._upload = result.upload
            return summarize_upload(result.upload)
        return self._finish(ti, hook, store, result.upload)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the gs:// object or the source table in, the table out."""
        from airflow_provider_redivis.lineage import operator_lineage

        source = self.source if self.source_table is None else self.source_table
        return operator_lineage(
            source, self.table, self._upload or {}, source_is_table=self.source_table is not None
        )
