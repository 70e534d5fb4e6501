"""column mapping: the batch's mapping, sheet, options and notes; the uploaded file kept
encrypted while the batch is open; saved mappings

Revision ID: 0009_column_mapping
Revises: 0008_sessions
Create Date: 2026-12-03 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009_column_mapping'
down_revision = '0008_sessions'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('import_batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mapping', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('sheet', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('update_passwords', sa.Boolean(), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('notes', sa.JSON(), nullable=True))
    # big files are read and checked in the background: a batch's status may be 'reading'
    with op.batch_alter_table('import_batches') as batch:
        batch.drop_constraint(op.f('ck_import_batches_batch_status'), type_='check')
        batch.create_check_constraint(op.f('ck_import_batches_batch_status'), "status IN "
                                      "('reading', 'staged', 'queued', 'applying', 'applied', "
                                      "'failed', 'expired')")
    op.create_table('upload_files',
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('sealed', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['import_batches.id'], name=op.f('fk_upload_files_batch_id_import_batches'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('batch_id', name=op.f('pk_upload_files'))
    )
    op.create_table('saved_mappings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('mapping', sa.JSON(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_saved_mappings_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saved_mappings')),
    sa.UniqueConstraint('signature', name=op.f('uq_saved_mappings_signature'))
    )


def downgrade():
    op.drop_table('saved_mappings')
    op.drop_table('upload_files')
    op.execute("UPDATE import_batches SET status = 'expired' WHERE status = 'reading'")
    with op.batch_alter_table('import_batches') as batch:
        batch.drop_constraint(op.f('ck_import_batches_batch_status'), type_='check')
        batch.create_check_constraint(op.f('ck_import_batches_batch_status'), "status IN "
                                      "('staged', 'queued', 'applying', 'applied', 'failed', "
                                      "'expired')")
    with op.batch_alter_table('import_batches', schema=None) as batch_op:
        batch_op.drop_column('notes')
        batch_op.drop_column('update_passwords')
        batch_op.drop_column('sheet')
        batch_op.drop_column('mapping')
