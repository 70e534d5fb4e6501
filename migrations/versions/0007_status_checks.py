"""statuses as enums: CHECK constraints on every status column

Revision ID: 0007_status_checks
Revises: 0006_profile_fields
Create Date: 2026-12-01 17:05:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007_status_checks'
down_revision = '0006_profile_fields'
branch_labels = None
depends_on = None

# (table, column, constraint name as the model's Enum names it, allowed values)
CHECKS = (
    ('import_batches', 'status', 'batch_status',
     ('staged', 'queued', 'applying', 'applied', 'failed', 'expired')),
    ('import_rows', 'proposed', 'row_proposed', ('add', 'update', 'nochange', 'error', 'skip')),
    ('import_rows', 'choice', 'row_choice', ('add', 'update', 'nochange', 'error', 'skip')),
    ('import_rows', 'outcome', 'row_outcome', ('added', 'updated', 'skipped', 'error')),
    ('invitations', 'status', 'invitation_status', ('queued', 'sending', 'sent', 'failed')),
    ('template_versions', 'kind', 'version_kind', ('save', 'restore', 'reset')),
    ('profile_fields', 'type', 'field_type', ('text', 'number', 'date', 'choice', 'yesno')),
)


def upgrade():
    for table, column, name, values in CHECKS:
        allowed = ", ".join(f"'{value}'" for value in values)
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(op.f(f'ck_{table}_{name}'), f"{column} IN ({allowed})")


def downgrade():
    for table, _column, name, _values in reversed(CHECKS):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f'ck_{table}_{name}'), type_='check')
