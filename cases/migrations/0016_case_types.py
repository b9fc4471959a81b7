import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

import workers.rules


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0015_merge_issue_23'),
    ]

    operations = [
        migrations.CreateModel(
            name='CaseType',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='Stored on cases: do not rename a type in use.', max_length=40, validators=[django.core.validators.RegexValidator(workers.rules.TYPE_NAME_RE, "Lowercase letters, digits, '-' and '_', starting with a letter.")])),
                ('label', models.CharField(max_length=100)),
                ('is_default', models.BooleanField(default=False, help_text='Mail in and the intake API open cases of this type when none is named (one per queue).')),
                ('queue', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='case_types', to='cases.queue')),
            ],
            options={'ordering': ['queue__slug', 'name']},
        ),
        migrations.CreateModel(
            name='CaseTypeField',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('required', models.BooleanField(default=False)),
                ('default', models.CharField(blank=True, help_text='Empty: none. Yes/no for a yes-or-no attribute, comma-separated for a list, ISO 8601 with a time zone for a date.', max_length=2000)),
                ('position', models.PositiveSmallIntegerField(default=0)),
                ('attribute', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='cases.caseattribute')),
                ('case_type', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='fields', to='cases.casetype')),
            ],
            options={'ordering': ['position', 'id']},
        ),
        migrations.CreateModel(
            name='CaseTypeVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('version', models.PositiveIntegerField()),
                ('spec', models.JSONField()),
                ('saved', models.DateTimeField(auto_now_add=True)),
                ('case_type', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='versions', to='cases.casetype')),
            ],
            options={'ordering': ['case_type', '-version']},
        ),
        migrations.AddConstraint(
            model_name='casetype',
            constraint=models.UniqueConstraint(fields=('queue', 'name'), name='case_type_name_per_queue'),
        ),
        migrations.AddConstraint(
            model_name='casetype',
            constraint=models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('queue',), name='one_default_case_type_per_queue'),
        ),
        migrations.AddConstraint(
            model_name='casetypefield',
            constraint=models.UniqueConstraint(fields=('case_type', 'attribute'), name='case_type_field_once'),
        ),
        migrations.AddConstraint(
            model_name='casetypeversion',
            constraint=models.UniqueConstraint(fields=('case_type', 'version'), name='case_type_version_once'),
        ),
    ]
