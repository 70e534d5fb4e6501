"""leavers: import rows for active users missing from a file, chosen for Block, blocked

Revision ID: 0010_leavers
Revises: 0009_column_mapping
Create Date: 2026-12-02 01:10:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010_leavers'
down_revision = '0009_column_mapping'
branch_labels = None
depends_on = None

ACTIONS = ('add', 'update', 'nochange', 'error', 'skip')
# (column, constraint name as the model's Enum names it, values before, values after)
CHECKS = (
    ('proposed', 'row_proposed', ACTIONS, (*ACTIONS, 'missing', 'block')),
    ('choice', 'row_choice', ACTIONS, (*ACTIONS, 'missing', 'block')),
    ('outcome', 'row_outcome', ('added', 'updated', 'skipped', 'error'),
     ('added', 'updated', 'skipped', 'error', 'blocked')),
)


def _replace_checks(values_of) -> None:
    with op.batch_alter_table('import_rows') as batch:
        for column, name, before, after in CHECKS:
            allowed = ", ".join(f"'{value}'" for value in values_of(before, after))
            batch.drop_constraint(op.f(f'ck_import_rows_{name}'), type_='check')
            batch.create_check_constraint(op.f(f'ck_import_rows_{name}'),
                                          f"{column} IN ({allowed})")


def upgrade():
    _replace_checks(lambda before, after: after)


def downgrade():
    # the rows stay, in the words of before: a leaver's row was skipped, or an update
    op.execute("UPDATE import_rows SET outcome = 'updated' WHERE outcome = 'blocked'")
    op.execute("UPDATE import_rows SET choice = 'skip' WHERE choice IN ('missing', 'block')")
    op.execute("UPDATE import_rows SET proposed = 'skip' WHERE proposed IN ('missing', 'block')")
    _replace_checks(lambda before, after: before)
