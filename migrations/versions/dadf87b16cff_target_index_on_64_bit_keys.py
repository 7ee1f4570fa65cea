"""target index on 64-bit keys

Revision ID: dadf87b16cff
Revises: ee51c41518c7
Create Date: 2026-11-23 18:12:38.281832

"""
import hashlib

from alembic import op
import sqlalchemy as sa

from taskforce.deconfliction.models import install_case_deleted_trigger


# revision identifiers, used by Alembic.
revision = 'dadf87b16cff'
down_revision = 'ee51c41518c7'
branch_labels = None
depends_on = None

# key64 as blind.key64 computes it when this revision was written (frozen here): the
# first 8 bytes, as a signed BIGINT, of the HMAC tag itself when blind, of SHA-256 of
# "<kind>|<value>" when plain.
PG_KEY64 = """
UPDATE target_registrations SET key64 = CASE WHEN scheme = 'plain'
    THEN ('x' || substr(encode(sha256(convert_to(kind || '|' || value_key, 'UTF8')), 'hex'),
                        1, 16))::bit(64)::bigint
    ELSE ('x' || substr(value_key, 1, 16))::bit(64)::bigint END"""


def _key64(kind: str, value_key: str, scheme: str) -> int:
    if scheme != "plain":
        u = int(value_key[:16], 16)
        return u - (1 << 64) if u >= (1 << 63) else u
    return int.from_bytes(hashlib.sha256(f"{kind}|{value_key}".encode()).digest()[:8],
                          "big", signed=True)


def _backfill(bind) -> None:
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(PG_KEY64)
    else:
        rows = bind.execute(sa.text(
            "SELECT id, kind, value_key, scheme FROM target_registrations")).all()
        if rows:
            bind.execute(sa.text("UPDATE target_registrations SET key64 = :k WHERE id = :i"),
                         [{"k": _key64(r.kind, r.value_key, r.scheme), "i": r.id} for r in rows])
    # values of one case sharing a key64 (next to never) take slots 1, 2, ... by id
    shared = bind.execute(sa.text(
        "SELECT key64, case_id FROM target_registrations GROUP BY key64, case_id "
        "HAVING count(*) > 1")).all()
    for key64, case_id in shared:
        ids = bind.execute(sa.text(
            "SELECT id FROM target_registrations WHERE key64 = :k AND case_id = :c ORDER BY id"),
            {"k": key64, "c": case_id}).scalars().all()
        for slot, rid in enumerate(ids):
            bind.execute(sa.text("UPDATE target_registrations SET key_slot = :s WHERE id = :i"),
                         {"s": slot, "i": rid})


def upgrade():
    bind = op.get_bind()
    with op.batch_alter_table('target_registrations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key64', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('key_slot', sa.SmallInteger(), nullable=False,
                                      server_default='0'))
    _backfill(bind)
    with op.batch_alter_table('target_registrations', schema=None) as batch_op:
        batch_op.alter_column('key64', existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column('key_slot', existing_type=sa.SmallInteger(), server_default=None)
        batch_op.drop_constraint(batch_op.f('case_identifier'), type_='unique')
        batch_op.create_unique_constraint('case_identifier', ['key64', 'case_id', 'key_slot'])
        batch_op.drop_constraint(batch_op.f('fk_target_registrations_agency_id_agencies'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_target_registrations_case_id_cases'), type_='foreignkey')
    # options autogenerate does not compare: partial indexes, BRIN on PostgreSQL
    op.create_index('ix_target_registrations_key_collisions', 'target_registrations',
                    ['key64', 'case_id'], unique=False,
                    postgresql_where=sa.text('key_slot > 0'), sqlite_where=sa.text('key_slot > 0'))
    op.drop_index('ix_target_registrations_expires_at', table_name='target_registrations')
    op.create_index('ix_target_registrations_expires_at', 'target_registrations', ['expires_at'],
                    postgresql_using='brin')
    op.drop_index('ix_target_registrations_entity_id', table_name='target_registrations')
    op.create_index('ix_target_registrations_entity_id', 'target_registrations', ['entity_id'],
                    postgresql_where=sa.text('entity_id IS NOT NULL'),
                    sqlite_where=sa.text('entity_id IS NOT NULL'))
    install_case_deleted_trigger(bind)  # what the case_id foreign key's CASCADE did


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS deconfliction_case_deleted ON cases")
        bind.exec_driver_sql("DROP FUNCTION IF EXISTS deconfliction_case_deleted()")
    else:
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS deconfliction_case_deleted")
    op.drop_index('ix_target_registrations_entity_id', table_name='target_registrations')
    op.create_index('ix_target_registrations_entity_id', 'target_registrations', ['entity_id'])
    op.drop_index('ix_target_registrations_expires_at', table_name='target_registrations')
    op.create_index('ix_target_registrations_expires_at', 'target_registrations', ['expires_at'])
    op.drop_index('ix_target_registrations_key_collisions', table_name='target_registrations')
    with op.batch_alter_table('target_registrations', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_target_registrations_case_id_cases'), 'cases', ['case_id'], ['id'], ondelete='CASCADE')
        batch_op.create_foreign_key(batch_op.f('fk_target_registrations_agency_id_agencies'), 'agencies', ['agency_id'], ['id'])
        batch_op.drop_constraint('case_identifier', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('case_identifier'), ['kind', 'value_key', 'case_id', 'scheme'])
        batch_op.drop_column('key_slot')
        batch_op.drop_column('key64')
